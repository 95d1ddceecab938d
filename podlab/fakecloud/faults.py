"""Faults by rule, deterministic and seeded, so a failure replays.

A rule matches an action (or `*`), optionally one ENI or instance, and then fails the call
with an Alibaba error code (always, with a probability, every N-th match, or within a time
window) and/or adds latency. A throttle is a token bucket per action that answers
`Throttling` with `x-acs-retry-after`. Set from Python, from a topology's `faults:`
section (`faults_from_dict`), or over `POST /_podlab/faults`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from podlab.fakecloud.exceptions import CloudError, InvalidParameter


class InjectedError(CloudError):
    """A fault rule's error: any code and status the rule names."""

    def __init__(self, code: str, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.headers = dict(headers or {})


@dataclass
class FaultRule:
    action: str = "*"
    code: str | None = None  # None: latency only
    status: int = 500
    message: str = "injected by a podlab fault rule"
    probability: float = 1.0
    every: int | None = None  # fail every N-th matching call
    window: tuple[float, float] | None = None  # [start, end) on the cloud's clock
    latency: float = 0.0
    target: str | None = None  # an ENI or instance id the call must name
    matched: int = field(default=0, compare=False)


@dataclass
class Throttle:
    action: str
    rate: float  # tokens per second
    burst: int
    code: str = "Throttling"
    tokens: float = field(default=-1.0, compare=False)
    stamp: float = field(default=0.0, compare=False)


class Faults:
    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rules: list[FaultRule] = []
        self.throttles: list[Throttle] = []
        self.random = random.Random(seed)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()

    def check(self, action: str, params: Mapping[str, str]) -> None:
        """Delay and/or raise for this call, as the rules say."""
        delay, error = 0.0, None
        with self._lock:
            now = self.clock()
            for t in self.throttles:
                if t.action in ("*", action) and error is None:
                    error = self._take(t, now)
            for rule in self.rules:
                if rule.action not in ("*", action):
                    continue
                if rule.target and rule.target not in params.values():
                    continue
                if rule.window and not rule.window[0] <= now < rule.window[1]:
                    continue
                rule.matched += 1
                delay += rule.latency
                if rule.code is None or error is not None:
                    continue
                hit = (rule.matched % rule.every == 0 if rule.every
                       else self.random.random() < rule.probability)
                if hit:
                    error = InjectedError(rule.code, rule.status, rule.message)
        if delay:
            self.sleep(delay)
        if error is not None:
            raise error

    @staticmethod
    def _take(t: Throttle, now: float) -> InjectedError | None:
        if t.tokens < 0:
            t.tokens, t.stamp = float(t.burst), now
        t.tokens = min(float(t.burst), t.tokens + (now - t.stamp) * t.rate)
        t.stamp = now
        if t.tokens >= 1:
            t.tokens -= 1
            return None
        wait = (1 - t.tokens) / t.rate
        return InjectedError(t.code, 400, "Request was denied due to request throttling.",
                             {"x-acs-retry-after": str(int(wait * 1000))})

    def set(self, data: Mapping[str, Any]) -> None:
        rules, throttles = faults_from_dict(data)
        with self._lock:
            self.rules, self.throttles = rules, throttles

    def describe(self) -> dict[str, Any]:
        return {"rules": [asdict(r) for r in self.rules],
                "throttles": [asdict(t) for t in self.throttles]}


def faults_from_dict(data: Mapping[str, Any]) -> tuple[list[FaultRule], list[Throttle]]:
    """The YAML/JSON form: {rules: [{action, code, status, probability, every, window,
    latency, target, message}], throttles: [{action, rate, burst, code}]}."""
    try:
        rules = [FaultRule(**{**r, "window": tuple(r["window"]) if r.get("window") else None})
                 for r in data.get("rules", [])]
        throttles = [Throttle(**t) for t in data.get("throttles", [])]
    except (TypeError, ValueError, KeyError) as e:
        raise InvalidParameter(f"The fault rules are malformed: {e}") from None
    for r in rules:
        if not 0 <= r.probability <= 1 or (r.every is not None and r.every < 1):
            raise InvalidParameter(f"Fault rule for {r.action}: probability is 0..1, every >= 1")
    for t in throttles:
        if t.rate <= 0 or t.burst < 1:
            raise InvalidParameter(f"Throttle for {t.action}: rate > 0 and burst >= 1")
    return rules, throttles
