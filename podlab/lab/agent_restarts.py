"""Restarting crashed node agents, as kubelet restarts a DaemonSet's pod: CrashLoopBackOff.

One thread per lab waits on the pidfds of the agents it watches (and on a pipe that wakes
it for a change or a stop). An agent that exits without the lab having asked it to has
crashed: the lab records its exit code, waits a back-off that starts at 1 s and doubles
up to 16 s, and starts it again with the same configuration. An agent that ran healthy
for 32 s (twice the cap, as kubelet's 10 min is twice its 5 min) starts over at 1 s. A
stop or kill the lab orders is not a crash: the lab forgets the agent first.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from podlab.lab.backoff import Backoff
from podlab.lab.errors import LabError


class Process(Protocol):
    """What is watched: an agent (`AgentProcess`) or a node-local DNS cache."""

    @property
    def returncode(self) -> int | None: ...

    def fileno(self) -> int:
        """A pidfd: readable once the process exited."""
        ...


P = TypeVar("P", bound=Process)
RESTART_INITIAL, RESTART_CAP = 1.0, 16.0  # seconds
HEALTHY_AFTER = 2 * RESTART_CAP  # a run this long forgets earlier crashes

# (node, proc): the dead proc's exit code if it still was the node's agent, else None
Claim = Callable[[str, P], int | None]
Restart = Callable[[str, dict[str, str]], None]  # (node, env): start it again
Crashed = Callable[[str, int | None, float], None]  # (node, exit code, restart in s)


@dataclass
class _Watched(Generic[P]):
    proc: P
    env: dict[str, str]
    started: float


class AgentRestarts(Generic[P]):
    def __init__(self, claim: Claim[P], restart: Restart, crashed: Crashed) -> None:
        self._claim, self._restart, self._crashed = claim, restart, crashed
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched[P]] = {}
        self._due: dict[str, tuple[float, dict[str, str]]] = {}  # node -> (when, env)
        self._backoff: dict[str, Backoff] = {}
        self._stopped = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="agent-restarts", daemon=True)
        self._thread.start()

    def watch(self, name: str, proc: P, env: dict[str, str]) -> None:
        """Restart `proc` when it crashes; a restart of the node that was due is off."""
        with self._lock:
            self._watched[name] = _Watched(proc, env, time.monotonic())
            self._due.pop(name, None)
        self._wake()

    def forget(self, name: str) -> None:
        """The lab stops this agent itself: no restart, and its back-off starts over."""
        with self._lock:
            self._watched.pop(name, None)
            self._due.pop(name, None)
            self._backoff.pop(name, None)
        self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake()
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                due = [(name, env) for name, (at, env) in self._due.items() if at <= now]
                for name, _ in due:
                    del self._due[name]
                wait = min((at - now for at, _ in self._due.values()), default=None)
                watched = {w.proc.fileno(): (name, w.proc) for name, w in
                           self._watched.items() if w.proc.returncode is None}
            for name, env in due:
                self._start_again(name, env)
            if due:
                continue
            try:
                ready, _, _ = select.select([self._wake_r, *watched], [], [], wait)
            except (OSError, ValueError):  # a pidfd closed meanwhile: look again
                continue
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            for fd in ready:
                if fd in watched:
                    self._exited(*watched[fd])

    def _exited(self, name: str, proc: P) -> None:
        with self._lock:
            watched = self._watched.get(name)
            if watched is None or watched.proc is not proc:
                return
            del self._watched[name]
        code = self._claim(name, proc)
        if code is None:  # still running (a spurious wake-up), or the lab took it
            with self._lock:
                self._watched.setdefault(name, watched)
            return
        self._schedule(name, watched.env, code, time.monotonic() - watched.started)

    def _schedule(self, name: str, env: dict[str, str], code: int | None, ran: float
                  ) -> None:
        with self._lock:
            backoff = self._backoff.setdefault(name, Backoff(RESTART_INITIAL, RESTART_CAP))
            if ran >= HEALTHY_AFTER:
                backoff.reset()
            delay = backoff.next()
            self._due[name] = (time.monotonic() + delay, env)
        self._crashed(name, code, delay)

    def _start_again(self, name: str, env: dict[str, str]) -> None:
        try:
            self._restart(name, env)
        except LabError:  # the zygote is gone, or the node: try again after a back-off
            self._schedule(name, env, None, 0.0)
