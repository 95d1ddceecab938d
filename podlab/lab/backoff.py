"""Doubling retry delays, as kubelet's: CrashLoopBackOff for a dead agent, and the
back-off on a pod whose sandbox the CNI could not create yet.

Kubelet starts at 10 s and caps at 300 s, and forgets a container's crashes once it ran
10 minutes; a lab scales those down so a test sees a recovery in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float
    cap: float
    failures: int = 0

    def next(self) -> float:
        """The delay before the next try; each failure doubles it, up to the cap."""
        delay = min(self.initial * 2.0 ** self.failures, self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
