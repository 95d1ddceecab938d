"""The agent's maintenance thread: reconcile and keep the pool in shape, whatever fails.

A round reconciles when it is due (`reconcile_period`), after a failed round, and while
an ENI is still attaching: a fill or round that failed mid-attach (a metadata timeout)
leaves it so, its slot counting against the ENI quota and its addresses not idle, and
only reconcile settles it. Then `Pool.maintain`. A round may fail with anything (a
metadata timeout is no cloud error): the thread logs `maintain_failed`, counts it and
tries again after a capped exponential back-off. It used to catch only the cloud's and
the pool's errors, so one metadata timeout ended it, and reconcile with it (issue 18).

While rounds fail the pool cannot grow: `problem` says why, the `status` op answers it,
and CNI STATUS fails, so the node is NotReady until a round succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from podlab.cni.config import AgentConfig
from podlab.cni.metrics import AgentMetrics
from podlab.cni.pool import Pool

BACKOFF_CAP = 30.0  # seconds between failed rounds, at most (the period, if longer)


class Maintenance:
    def __init__(self, pool: Pool, config: AgentConfig, metrics: AgentMetrics,
                 events: Callable[..., None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool, self.config, self.metrics, self.events = pool, config, metrics, events
        self.clock = clock
        self.failures = 0  # rounds failed in a row
        self.last_error = ""
        self._last_reconcile = clock()

    def run(self, stop: threading.Event) -> None:
        """Rounds until `stop` is set."""
        while not stop.wait(self.delay()):
            self.round()

    def delay(self) -> float:
        """The period, doubled per failed round, capped: a cloud or metadata that fails
        is not asked harder."""
        period = self.config.maintain_period
        return min(period * 2.0 ** min(self.failures, 32), max(BACKOFF_CAP, period))

    def round(self) -> bool:
        """One round; whether it succeeded."""
        try:
            if self.failures or self.pool.attaching() or \
                    self.clock() - self._last_reconcile >= self.config.reconcile_period:
                self.pool.reconcile()
                self._last_reconcile = self.clock()
            self.pool.maintain()
        except Exception as e:  # any error at all: the thread must outlive it
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self.metrics.maintain_failed.labels(type(e).__name__).inc()
            self.metrics.maintain_failing.set(self.failures)
            self.events("maintain_failed", error=self.last_error, failures=self.failures,
                        retry_in=self.delay())
            return False
        if self.failures:
            self.events("maintain_recovered", failures=self.failures)
        self.failures, self.last_error = 0, ""
        self.metrics.maintain_failing.set(0)
        return True

    @property
    def problem(self) -> str | None:
        """Why the pool cannot grow now, or None."""
        if not self.failures:
            return None
        return (f"the pool cannot grow: maintenance failed {self.failures} time(s) in a "
                f"row, last with {self.last_error}")
