"""The controllers' work queue: a burst for one key is one reconcile, a change during a
reconcile is not lost, a failure is retried."""

from __future__ import annotations

import threading
from collections.abc import Hashable

import pytest

from podlab.controllers import workqueue
from podlab.controllers.workqueue import WorkQueue

WAIT = 10.0


def test_keys_waiting_are_handled_once_and_a_change_during_handling_again() -> None:
    entered, release = threading.Event(), threading.Event()
    handled: list[Hashable] = []
    done = threading.Semaphore(0)

    def handle(key: Hashable) -> None:
        if key == "slow" and not entered.is_set():
            entered.set()
            assert release.wait(WAIT)
        handled.append(key)
        done.release()

    queue = WorkQueue("test", handle).start()
    try:
        queue.add("slow")
        assert entered.wait(WAIT)
        for _ in range(5):
            queue.add("fast")  # waiting: deduplicated
            queue.add("slow")  # being handled: once more afterwards
        release.set()
        for _ in range(3):
            assert done.acquire(timeout=WAIT)
        assert not done.acquire(timeout=0.2), f"more than three reconciles: {handled}"
        assert sorted(map(str, handled)) == ["fast", "slow", "slow"]
    finally:
        queue.stop()


def test_a_failing_key_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workqueue, "RETRY_DELAY", 0.01)
    attempts: list[int] = []
    succeeded = threading.Event()

    def handle(_key: Hashable) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("the API is away")
        succeeded.set()

    queue = WorkQueue("test", handle).start()
    try:
        queue.add("k")
        assert succeeded.wait(WAIT)
        assert len(attempts) == 3
    finally:
        queue.stop()


def test_a_key_put_back_with_a_delay_by_its_own_handler_waits_for_it() -> None:
    """How a controller retries later (a back-off, a periodic check): re-adding the key
    it is handling, with a delay, must not run it again at once."""
    handled = threading.Semaphore(0)
    queue: WorkQueue

    def handle(key: Hashable) -> None:
        queue.add(key, delay=3600)
        handled.release()

    queue = WorkQueue("test", handle).start()
    try:
        queue.add("k")
        assert handled.acquire(timeout=WAIT)
        assert not handled.acquire(timeout=0.5), "handled again before its delay"
    finally:
        queue.stop()
