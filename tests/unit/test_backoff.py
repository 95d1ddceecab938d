"""The lab's kubelet-style back-off: doubling from the first delay up to the cap."""

from __future__ import annotations

from podlab.lab.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_a_reset() -> None:
    backoff = Backoff(1.0, 16.0)
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    backoff.reset()
    assert backoff.next() == 1.0
