"""client-go's workqueue, reduced to what these controllers need: keys, deduplicated
while waiting, handled by one worker thread each, retried with a delay on failure.

A controller is level-triggered: it is told *which* object changed, reads the current
state from the store and makes the world match, so a burst of events for one object is
one reconcile, and a handler never sees stale event payloads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)
RETRY_DELAY = 0.5  # seconds before a failed key is tried again
MAX_RETRIES = 20


class WorkQueue:
    def __init__(self, name: str, handle: Callable[[Hashable], None]) -> None:
        self.name, self.handle = name, handle
        self._cond = threading.Condition()
        self._waiting: dict[Hashable, float] = {}  # key -> not before (monotonic)
        self._busy: set[Hashable] = set()
        self._again: dict[Hashable, float] = {}  # added while being handled: not before
        self._failures: dict[Hashable, int] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"ctrl-{name}", daemon=True)

    def start(self) -> WorkQueue:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        with self._cond:
            due = time.monotonic() + delay
            waiting = self._again if key in self._busy else self._waiting
            waiting[key] = min(due, waiting.get(key, due))
            self._cond.notify_all()

    def _next(self) -> Hashable | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [(t, k) for k, t in self._waiting.items() if t <= now]
                if due:
                    _, key = min(due, key=lambda tk: tk[0])
                    del self._waiting[key]
                    self._busy.add(key)
                    return key
                wait = min(self._waiting.values(), default=now + 1.0) - now
                self._cond.wait(timeout=max(wait, 0.001))
            return None

    def _run(self) -> None:
        while (key := self._next()) is not None:
            failed = False
            try:
                self.handle(key)
            except Exception:  # a controller must survive any one object's failure
                failed = True
                log.exception("%s: handling %s failed", self.name, key)
            with self._cond:
                self._busy.discard(key)
                tries = self._failures.pop(key, 0) + 1 if failed else 0
                if failed and tries < MAX_RETRIES:
                    self._failures[key] = tries
                    self._waiting[key] = time.monotonic() + RETRY_DELAY
                elif key in self._again:
                    self._waiting[key] = self._again[key]
                self._again.pop(key, None)
                self._cond.notify_all()
