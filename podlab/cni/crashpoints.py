"""Named places where the agent can be made to die, to prove its state survives.

Two are instrumented around every cloud mutation: `intent-written` (the intent is on
disk, the call not made) and `cloud-answered` (the cloud acted, nothing committed).
In-process tests raise `Crash` there; a daemon started with
`PODLAB_AGENT_CRASH_AT=point[:nth]` SIGKILLs itself at the nth hit, as `kill -9` would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

POINTS = ("intent-written", "cloud-answered")
ENV = "PODLAB_AGENT_CRASH_AT"
CrashHook = Callable[[str], None]


class Crash(BaseException):
    """Stands for the agent's death in an in-process test (BaseException: nothing in the
    agent may catch it)."""


def never(point: str) -> None:
    """The production hook: no crash."""


def armed(point: str, nth: int, die: Callable[[str], None]) -> CrashHook:
    """A hook that calls `die` the nth time `point` is reached."""
    hits = 0

    def hook(reached: str) -> None:
        nonlocal hits
        if reached == point:
            hits += 1
            if hits == nth:
                die(point)
    return hook


def raise_crash(point: str) -> None:
    raise Crash(point)


def from_environment() -> CrashHook:
    """What a daemon uses: armed by the environment, or `never`."""
    spec = os.environ.get(ENV)
    if not spec:
        return never
    point, _, nth = spec.partition(":")
    return armed(point, int(nth or 1), lambda _: os.kill(os.getpid(), signal.SIGKILL))
