"""Faults by rule, deterministic and seeded, so a failure replays.

A rule matches an action (or `*`), optionally one ENI or instance, and then fails the call
with an Alibaba error code (always, with a probability, every N-th match, or within a time
window) and/or adds latency. A throttle is a token bucket per action that answers
`Throttling` with `x-acs-retry-after`. Set from Python, from a topology's `faults:`
section (with the topology's `seed`), or over `POST /_podlab/faults`.

Every field is checked before anything is applied: a bad rule applied would fail every
call the cloud answers (a negative latency, a status that is no HTTP status), so it is
refused with an error naming the field, and the rules in force stay as they were.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from podlab.fakecloud.exceptions import CloudError, InvalidParameter

MAX_LATENCY = 600.0  # seconds: longer holds a server thread past any client's timeout
MAX_ITEMS = 256  # rules, and throttles: each is checked on every call
MAX_SEED = 2**63 - 1


class InjectedError(CloudError):
    """A fault rule's error: any code and status the rule names."""

    def __init__(self, code: str, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.headers = dict(headers or {})


class FaultSettingError(InvalidParameter):
    """A fault setting that cannot be applied; `field` is its path, e.g. `rules[0].latency`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


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


class FaultSettings(NamedTuple):
    seed: int | None  # None: keep the seed in force
    rules: list[FaultRule]
    throttles: list[Throttle]


class Faults:
    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 settings: Mapping[str, Any] | None = None) -> None:
        self.seed = seed
        self.rules: list[FaultRule] = []
        self.throttles: list[Throttle] = []
        self.random = random.Random(seed)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        if settings:
            self.set(settings)

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
        """Replace the rules and throttles (and the seed, if `data` has one). The random
        draws restart from the seed, so the same seed and rules fail the same calls."""
        settings = faults_from_dict(data)
        with self._lock:
            if settings.seed is not None:
                self.seed = settings.seed
            self.random = random.Random(self.seed)
            self.rules, self.throttles = settings.rules, settings.throttles

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": [asdict(r) for r in self.rules],
                "throttles": [asdict(t) for t in self.throttles]}


def faults_from_dict(data: Any) -> FaultSettings:
    """The YAML/JSON form: {seed, rules: [{action, code, status, probability, every, window,
    latency, target, message}], throttles: [{action, rate, burst, code}]}, every field
    checked; a FaultSettingError names the first that is wrong."""
    _mapping(data, "", {"seed", "rules", "throttles"})
    seed = data.get("seed")
    if seed is not None:
        seed = _integer(seed, "seed", 0, MAX_SEED)
    rules = [_rule(r, f"rules[{i}]") for i, r in enumerate(_items(data, "rules"))]
    throttles = [_throttle(t, f"throttles[{i}]") for i, t in enumerate(_items(data, "throttles"))]
    return FaultSettings(seed, rules, throttles)


def _rule(data: Any, at: str) -> FaultRule:
    _mapping(data, at, {f.name for f in fields(FaultRule)} - {"matched"})
    rule = FaultRule()
    if "action" in data:
        rule.action = _text(data["action"], f"{at}.action")
    if data.get("code") is not None:
        rule.code = _text(data["code"], f"{at}.code")
    if "status" in data:
        rule.status = _integer(data["status"], f"{at}.status", 400, 599,
                               "an error's HTTP status, 400 to 599")
    if "message" in data:
        rule.message = _text(data["message"], f"{at}.message")
    if "probability" in data:
        rule.probability = _number(data["probability"], f"{at}.probability", 0, 1)
    if data.get("every") is not None:
        rule.every = _integer(data["every"], f"{at}.every", 1, 2**31,
                              "fail every N-th matching call: N >= 1")
    if data.get("window") is not None:
        rule.window = _window(data["window"], f"{at}.window")
    if "latency" in data:
        rule.latency = _number(data["latency"], f"{at}.latency", 0, MAX_LATENCY, "seconds")
    if data.get("target") is not None:
        rule.target = _text(data["target"], f"{at}.target")
    return rule


def _throttle(data: Any, at: str) -> Throttle:
    _mapping(data, at, {"action", "rate", "burst", "code"})
    for key in ("action", "rate", "burst"):
        if key not in data:
            raise FaultSettingError(f"{at}.{key}", "missing: a throttle needs action, rate "
                                                   "(tokens per second) and burst")
    rate = _number(data["rate"], f"{at}.rate", 0, 1e9, "tokens per second")
    if rate == 0:
        raise FaultSettingError(f"{at}.rate", "0: a throttle's rate is tokens per second, > 0")
    return Throttle(_text(data["action"], f"{at}.action"), rate,
                    _integer(data["burst"], f"{at}.burst", 1, 2**31, "tokens, >= 1"),
                    _text(data.get("code", "Throttling"), f"{at}.code"))


def _window(value: Any, at: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise FaultSettingError(at, f"{value!r}: a window is [start, end) in seconds on the "
                                    "cloud's clock, two numbers")
    start = _number(value[0], f"{at}[0]", 0, float("inf"), "seconds")
    end = _number(value[1], f"{at}[1]", 0, float("inf"), "seconds")
    if end <= start:
        raise FaultSettingError(at, f"{list(value)!r}: the end comes after the start")
    return start, end


def _mapping(value: Any, at: str, known: set[str]) -> None:
    """`at` is "" for the settings themselves, whose fields are named bare (`seed`)."""
    if not isinstance(value, Mapping):
        raise FaultSettingError(at or "faults", f"{value!r} is not a mapping")
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise FaultSettingError(f"{at}.{unknown[0]}" if at else unknown[0],
                                f"unknown field; known: {', '.join(sorted(known))}")


def _items(data: Mapping[str, Any], key: str) -> list[Any]:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise FaultSettingError(key, f"{items!r} is not a list")
    if len(items) > MAX_ITEMS:
        raise FaultSettingError(key, f"{len(items)} entries; at most {MAX_ITEMS}")
    return items


def _text(value: Any, at: str) -> str:
    if not isinstance(value, str) or not value:
        raise FaultSettingError(at, f"{value!r} is not a non-empty string")
    return value


def _number(value: Any, at: str, low: float, high: float, what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        unit = f" ({what})" if what else ""
        span = f"from {low:g} to {high:g}" if high < float("inf") else f">= {low:g}"
        raise FaultSettingError(at, f"{value!r} is not a number {span}{unit}")
    return float(value)


def _integer(value: Any, at: str, low: int, high: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        unit = f" ({what})" if what else ""
        raise FaultSettingError(at, f"{value!r} is not an integer from {low} to {high}{unit}")
    return value
