"""The one wait loop of the pool: every deadline is read from the injected clock, so a
test's clock drives attach waits, delete waits and alloc timeouts alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(ready: Callable[[], T | None], *, clock: Callable[[], float],
               wait: Callable[[float], object], deadline: float, pause: float,
               timeout: Callable[[], Exception], longest: float = 1.0) -> T:
    """`ready()` until it answers something other than None; between tries `wait` (a
    sleep, or a condition's wait) `pause` seconds, doubling up to `longest`. Past
    `deadline` on `clock`, raise `timeout()`."""
    while True:
        result = ready()
        if result is not None:
            return result
        if clock() > deadline:
            raise timeout()
        wait(pause)
        pause = min(pause * 2, longest)
