"""Many node agents on one host, forked from one process that imported them once.

A lab runs one agent per node on a single machine. Each importing its own SDKs, they held
~115 MiB (PSS) apiece. The zygote (`podlab-agent zygote`) imports what an agent runs,
then forks one child per agent, which enters its node's netns (setns) and runs
`podlab.cni.agent.run`. Imports are shared copy-on-write (`gc.freeze` first, so the
collector never writes to those pages), yet each agent is still a process of its own:
`kill -9` takes one node's agent and nothing else.

Lifetimes: the zygote exits when its stdin closes, which the kernel does when the
process that started it dies, however it dies; each agent dies with the zygote
(PR_SET_PDEATHSIG). So no agent outlives its owner.

The protocol is JSON lines: the zygote writes `{"ready": pid}`, then answers each request
on stdin: `{"op": "spawn", "config", "netns", "log", "env"}` → `{"pid"}`;
`{"op": "poll", "pid"}` → `{"returncode": int | null}` (Popen's convention); a failure
→ `{"error"}`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000
# What an agent imports: the daemon, and the API client its watches (pods; Services and
# policies in eBPF mode) load next, whose API classes and models import on first use: 34
# MiB in each agent, were they not here. Only the zygote imports them; the lab imports this
# module for the client half below.
PRELOAD = ("podlab.cni.agent", "podlab.cni.kubewatch", "podlab.cni.servicewatch",
           "podlab.cni.policywatch", "kubernetes.client.api.core_v1_api",
           "podlab.datapath.netlink")


class ZygoteError(Exception):
    """The zygote could not start, or could not fork an agent; the message says why."""


# -- the zygote process -------------------------------------------------------------------


def serve() -> int:
    """The zygote's main: preload, then fork agents on request until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    for module in PRELOAD:
        importlib.import_module(module)
    out = sys.stdout
    _answer(out, {"ready": os.getpid()})
    exits: dict[int, int] = {}
    for line in sys.stdin:
        try:
            request = json.loads(line)
            answer = _spawn(request) if request["op"] == "spawn" else \
                {"returncode": _returncode(int(request["pid"]), exits)}
        except (OSError, KeyError, TypeError, ValueError) as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        _answer(out, answer)
    return 0


def _answer(out: IO[str], answer: dict[str, Any]) -> None:
    out.write(json.dumps(answer) + "\n")
    out.flush()


def _spawn(request: dict[str, Any]) -> dict[str, Any]:
    from podlab.datapath.netlink import netns_path  # preloaded

    env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
    netns = os.open(netns_path(str(request["netns"])), os.O_RDONLY)  # missing: fails here
    try:
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        os.close(netns)
        raise
    gc.freeze()  # everything so far stays on shared pages in the child
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _agent(parent, netns, log, Path(str(request["config"])), env)
    os.close(netns)
    os.close(log)
    return {"pid": pid}


def _agent(parent: int, netns: int, log: int, config: Path, env: dict[str, str]) -> NoReturn:
    """The forked child: become the node's agent, and never return into the zygote."""
    code = 1
    try:
        die_with_parent(parent)
        _libc_call("setns", netns, CLONE_NEWNET)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in (devnull, netns, log):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.update(env)
        from podlab.cni.agent import run  # preloaded

        code = run(config)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends. If the parent ended between the fork
    and now, this process was re-parented already and no signal will come: exit now."""
    _libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _libc_call(name: str, *args: int) -> None:
    """Python 3.11 has neither prctl nor os.setns (3.12)."""
    if getattr(ctypes.CDLL(None, use_errno=True), name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _returncode(pid: int, exits: dict[int, int]) -> int | None:
    if pid not in exits:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            return None
        exits[pid] = os.waitstatus_to_exitcode(status)
    return exits[pid]


# -- the client (the lab's side) ----------------------------------------------------------


class Zygote:
    """A running zygote, started by this process; its stdin is the zygote's lifeline."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        with log.open("ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "podlab.cni", "zygote"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=dict(env))
        self.log = log
        self.pid = self._proc.pid
        self._lock = threading.Lock()  # one request and its answer at a time
        self._read()

    def spawn(self, config: Path, netns: str, log: Path, env: Mapping[str, str]
              ) -> AgentProcess:
        """Fork an agent into `netns` (a name under /run/netns or a path), logging to `log`,
        with `env` added to the zygote's environment."""
        answer = self._call(op="spawn", config=str(config), netns=netns, log=str(log),
                            env=dict(env))
        return AgentProcess(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        code = self._call(op="poll", pid=pid)["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        """Closing stdin ends the zygote, and with it every agent still running."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait()

    def _call(self, **request: object) -> dict[str, Any]:
        assert self._proc.stdin is not None
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except BrokenPipeError as e:
                raise ZygoteError(self._exited()) from e
            return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise ZygoteError(self._exited())
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ZygoteError(str(answer["error"]))
        return answer

    def _exited(self) -> str:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return f"the agent zygote exited ({self._proc.wait()}): {tail}"


class AgentProcess:
    """An agent forked by a zygote, with the part of Popen's interface the lab uses. It is
    the zygote's child, not ours: its exit status comes from the zygote, and signals go
    through a pidfd, so they never reach a process that reused its pid."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._zygote = zygote
        self._pidfd = os.pidfd_open(pid)
        self._polling = threading.Lock()  # the lab's restarts poll too: close pidfd once

    def poll(self) -> int | None:
        with self._polling:
            if self.returncode is None:
                self.returncode = self._zygote.returncode(self.pid)
                if self.returncode is not None:
                    os.close(self._pidfd)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"podlab agent {self.pid}", timeout or 0)
            select.select([self._pidfd], [], [], left)  # readable once the agent exited
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited; poll() tells how
                signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def fileno(self) -> int:
        """For select(): readable once the agent exited (until poll() saw it exit)."""
        return self._pidfd
