"""The maintenance thread outlives any error (issue 18: one metadata timeout ended it, and
reconcile with it), backs off, and says the pool cannot grow while its rounds fail."""

from __future__ import annotations

import threading
import time
from typing import cast

from podlab.cni.config import AgentConfig
from podlab.cni.identity import MetadataError
from podlab.cni.maintain import BACKOFF_CAP, Maintenance
from podlab.cni.metrics import AgentMetrics
from podlab.cni.pool import Pool


class FlakyPool:
    """A pool whose rounds fail with `errors`, in order, then succeed."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.reconciles = self.rounds = 0
        self.attaching_enis = False

    def attaching(self) -> bool:
        return self.attaching_enis

    def reconcile(self) -> None:
        self.reconciles += 1

    def maintain(self) -> None:
        self.rounds += 1
        if self.errors:
            raise self.errors.pop(0)


def _maintenance(pool: FlakyPool, **config: object
                 ) -> tuple[Maintenance, AgentMetrics, list[tuple[str, dict[str, object]]]]:
    metrics = AgentMetrics()
    events: list[tuple[str, dict[str, object]]] = []
    m = Maintenance(cast(Pool, pool), AgentConfig.from_dict(
        {"maintain_period": 1.0, "reconcile_period": 3600, **config}), metrics,
        lambda event, **fields: events.append((event, fields)))
    return m, metrics, events


def test_any_error_is_counted_reported_and_backed_off_until_a_round_succeeds() -> None:
    pool = FlakyPool(MetadataError("metadata timed out"), *[RuntimeError("bug")] * 9)
    m, metrics, events = _maintenance(pool)
    assert m.round() is False
    assert "MetadataError: metadata timed out" in (m.problem or "")
    assert metrics.registry.get_sample_value(
        "podlab_agent_maintain_failed_total", {"error": "MetadataError"}) == 1
    assert metrics.registry.get_sample_value("podlab_agent_maintain_failing") == 1
    assert events[-1][0] == "maintain_failed"
    assert m.delay() == 2.0
    while pool.errors:
        assert m.round() is False
    assert m.delay() == BACKOFF_CAP, "doubling, capped"
    assert pool.reconciles == 9, "a round after a failure reconciles first"
    assert m.round() is True
    assert (m.problem, m.delay(), events[-1][0]) == (None, 1.0, "maintain_recovered")
    assert metrics.registry.get_sample_value("podlab_agent_maintain_failing") == 0
    assert pool.reconciles == 10


def test_an_eni_left_attaching_is_reconciled_without_waiting_for_the_period() -> None:
    pool = FlakyPool()
    m, _, _ = _maintenance(pool)
    assert m.round()
    assert pool.reconciles == 0
    pool.attaching_enis = True  # a fill that failed mid-attach left it so
    assert m.round()
    assert pool.reconciles == 1


def test_the_thread_survives_errors_that_are_no_cloud_errors() -> None:
    pool = FlakyPool(MetadataError("timed out"), KeyError("x"), ValueError("y"))
    m, _, _ = _maintenance(pool, maintain_period=0.001)
    stop = threading.Event()
    thread = threading.Thread(target=m.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while pool.rounds < 5 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the thread's progress
    stop.set()
    thread.join(timeout=10)
    assert pool.rounds >= 5, "the thread stopped at an error"
    assert m.problem is None


def test_the_back_off_stays_capped_however_long_the_outage() -> None:
    m, _, _ = _maintenance(FlakyPool())
    m.failures = 5000  # days of failed rounds: 2.0 ** 5000 would overflow a float
    assert m.delay() == BACKOFF_CAP
