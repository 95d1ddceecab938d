"""What should reach what, and what did, as upstream's netpol e2e tests say it: a
`Reachability` is a default and exceptions to it, a `Matrix` is what probes observed, and
each prints as upstream's truth tables do (rows from, columns to, "." connected, "X" not).

Pure: no sockets, no lab (`podlab.lab.reach` makes the observations). Pods are named
`namespace/name`; an exception may name them by pattern: `ns/*`, `*/name` or `*` (upstream's
Peer with an empty namespace or pod).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podlab.lab.errors import LabError

PROTOCOLS = ("tcp", "udp")
ANY = "*"
LEGEND = 'rows: from, columns: to; "." connected, "X" not, "?" not probed'
FORMAT = "see docs/reach.md for the expectation file's format"


class ExpectationError(LabError):
    """An expectation file or rule is not acceptable; the message names the field."""


@dataclass(frozen=True, order=True)
class Probe:
    """One cell of a matrix: a connection from pod `source` to pod `target`."""

    source: str
    target: str
    port: int
    protocol: str


@dataclass(frozen=True)
class TruthTable:
    """One port and protocol: for each ordered pair of `pods`, a truth value (or none)."""

    pods: tuple[str, ...]
    values: Mapping[tuple[str, str], bool]

    def render(self) -> str:
        width = max([1, *map(len, self.pods)])
        rows = [["-", *self.pods]] + [
            [source, *(_mark(self.values.get((source, target))) for target in self.pods)]
            for source in self.pods]
        return "\n".join(" ".join(c.ljust(width) for c in row).rstrip() for row in rows)


def all_probes(pods: Iterable[str], ports: Iterable[int], protocols: Iterable[str]
               ) -> Iterator[Probe]:
    """Every ordered pair of `pods`, a pod and itself included, on every port and protocol."""
    names, each_protocol = tuple(pods), tuple(protocols)
    return (Probe(source, target, port, protocol) for port in tuple(ports)
            for protocol in each_protocol for source in names for target in names)


def _mark(value: bool | None) -> str:
    return "?" if value is None else "." if value else "X"


@dataclass(frozen=True)
class Matrix:
    """Every ordered pair of `pods` (a pod and itself included) on every port and protocol:
    connected or not. Observed by `podlab.lab.reach.probe_matrix`, or expected
    (`Reachability.matrix`)."""

    pods: tuple[str, ...]
    ports: tuple[int, ...]
    protocols: tuple[str, ...]
    connected: Mapping[Probe, bool]

    def cases(self) -> Iterator[tuple[int, str]]:
        """(port, protocol) in the order tables print."""
        return ((port, protocol) for port in self.ports for protocol in self.protocols)

    def probes(self) -> Iterator[Probe]:
        """Every cell, in the order tables print: port, protocol, from, to."""
        return all_probes(self.pods, self.ports, self.protocols)

    def table(self, port: int, protocol: str) -> TruthTable:
        return TruthTable(self.pods, {(p.source, p.target): v for p, v in self.connected.items()
                                      if (p.port, p.protocol) == (port, protocol)})

    def render(self) -> str:
        return "\n\n".join(f"{port}/{protocol}\n{self.table(port, protocol).render()}"
                           for port, protocol in self.cases())

    def to_json(self) -> dict[str, Any]:
        return {"pairs": [{"from": p.source, "to": p.target, "port": p.port,
                           "protocol": p.protocol, "connected": self.connected[p]}
                          for p in self.probes() if p in self.connected]}


@dataclass(frozen=True)
class Rule:
    """Connections from `source` to `target` (patterns), on `port` and `protocol` (None:
    any), are expected `connected`; `loopback` rules match only a pod and itself."""

    source: str
    target: str
    connected: bool
    port: int | None = None
    protocol: str | None = None
    loopback: bool = False

    def matches(self, probe: Probe) -> bool:
        return (_matches(self.source, probe.source) and _matches(self.target, probe.target)
                and self.port in (None, probe.port) and self.protocol in (None, probe.protocol)
                and (not self.loopback or probe.source == probe.target))


def _matches(pattern: str, pod: str) -> bool:
    if pattern == ANY:
        return True
    namespace, name = pattern.split("/")
    pod_namespace, pod_name = pod.split("/")
    return namespace in (ANY, pod_namespace) and name in (ANY, pod_name)


def check_pattern(pattern: str) -> str:
    """`pattern`, if it names pods: ns/name, ns/*, */name or *."""
    parts = pattern.split("/")
    if pattern != ANY and (len(parts) != 2 or not all(parts)):
        raise ExpectationError(f"{pattern!r} names no pods: ns/name, ns/*, */name or *")
    return pattern


def check_protocol(protocol: str) -> str:
    if protocol.lower() not in PROTOCOLS:
        raise ExpectationError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    return protocol.lower()


def check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ExpectationError(f"port {port!r}: a number from 1 to 65535")
    return port


class Reachability:
    """Upstream's expectation builder: every connection is `default` except where a rule
    says otherwise, the last matching rule winning, so general rules go first.

        r = Reachability(True).expect_all_ingress("x/a", False).allow_loopback()
    """

    def __init__(self, default: bool = True) -> None:
        self.default = default
        self.rules: list[Rule] = []

    def expect(self, source: str, target: str, connected: bool, port: int | None = None,
               protocol: str | None = None) -> Reachability:
        """From `source` to `target` (pods or patterns), on `port`/`protocol` or all."""
        self.rules.append(Rule(check_pattern(source), check_pattern(target), connected,
                               None if port is None else check_port(port),
                               None if protocol is None else check_protocol(protocol)))
        return self

    def expect_all_ingress(self, target: str, connected: bool, port: int | None = None,
                           protocol: str | None = None) -> Reachability:
        """Every pod (itself included) to `target`."""
        return self.expect(ANY, target, connected, port, protocol)

    def allow_loopback(self) -> Reachability:
        """Every pod reaches itself, whatever the rules before said (as upstream's
        AllowLoopback; a pod's connection to its own IP never leaves it)."""
        self.rules.append(Rule(ANY, ANY, True, loopback=True))
        return self

    def expected(self, probe: Probe) -> bool:
        return next((r.connected for r in reversed(self.rules) if r.matches(probe)),
                    self.default)

    def matrix(self, pods: Iterable[str], ports: Iterable[int],
               protocols: Iterable[str]) -> Matrix:
        """The expectation for these pods, ports and protocols."""
        pods, ports, protocols = tuple(pods), tuple(ports), tuple(protocols)
        return Matrix(pods, ports, protocols,
                      {p: self.expected(p) for p in all_probes(pods, ports, protocols)})

    def unmatched(self, pods: Iterable[str]) -> list[Rule]:
        """The rules that match no pair of `pods`: a misspelt pod, most likely."""
        names = list(pods)
        return [r for r in self.rules
                if not any(_matches(r.source, s) for s in names)
                or not any(_matches(r.target, t) for t in names)]

    # -- the expectation file ------------------------------------------------------------

    @classmethod
    def from_json(cls, data: object, source: str = "expectation") -> Reachability:
        """{"default": bool, "pairs": [{"from", "to", "connected", "port"?, "protocol"?}],
        "allow_loopback": bool (default true, applied after the pairs)}."""
        if not isinstance(data, dict) or not isinstance(data.get("default"), bool):
            raise ExpectationError(f'{source}: expected an object with "default": true or '
                                   f"false; {FORMAT}")
        unknown = set(data) - {"default", "pairs", "allow_loopback"}
        if unknown:
            raise ExpectationError(f"{source}: unknown field(s) {', '.join(sorted(unknown))};"
                                   f" {FORMAT}")
        pairs = data.get("pairs", [])
        if not isinstance(pairs, list):
            raise ExpectationError(f'{source}: "pairs" must be a list; {FORMAT}')
        reach = cls(data["default"])
        for i, pair in enumerate(pairs):
            where = f"{source}: pairs[{i}]"
            if not isinstance(pair, dict):
                raise ExpectationError(f"{where}: expected an object; {FORMAT}")
            missing = [k for k in ("from", "to", "connected") if k not in pair]
            extra = set(pair) - {"from", "to", "connected", "port", "protocol"}
            if missing or extra or not isinstance(pair["connected"], bool):
                raise ExpectationError(
                    f'{where}: needs "from", "to" and "connected" (true or false), may have '
                    f'"port" and "protocol", and nothing else; {FORMAT}')
            try:
                reach.expect(str(pair["from"]), str(pair["to"]), pair["connected"],
                             pair.get("port"), pair.get("protocol"))
            except ExpectationError as e:
                raise ExpectationError(f"{where}: {e}; {FORMAT}") from None
        loopback = data.get("allow_loopback", True)
        if not isinstance(loopback, bool):
            raise ExpectationError(f'{source}: "allow_loopback" is true or false; {FORMAT}')
        return reach.allow_loopback() if loopback else reach

    @classmethod
    def load(cls, path: str) -> Reachability:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as e:
            raise ExpectationError(f"cannot read {path}: {e.strerror}; {FORMAT}") from None
        except ValueError as e:
            raise ExpectationError(f"{path}: not JSON: {e}; {FORMAT}") from None
        return cls.from_json(data, path)


@dataclass(frozen=True)
class Difference:
    probe: Probe
    expected: bool

    def to_json(self) -> dict[str, Any]:
        p = self.probe
        return {"from": p.source, "to": p.target, "port": p.port, "protocol": p.protocol,
                "expected": self.expected, "connected": not self.expected}

    def __str__(self) -> str:
        p = self.probe
        said = ("connected", "not connected")
        return (f"{p.source} -> {p.target} {p.port}/{p.protocol}: expected "
                f"{said[not self.expected]}, observed {said[self.expected]}")


def differences(expected: Reachability, observed: Matrix) -> list[Difference]:
    """Every observed probe whose result is not the expected one."""
    return [Difference(p, want) for p in observed.probes() if p in observed.connected
            and (want := expected.expected(p)) != observed.connected[p]]


def comparison(expected: Reachability, observed: Matrix) -> str:
    """Per port and protocol: the expected, observed and comparison tables ("." where
    they agree, "X" where not) as upstream prints them, then each difference."""
    want = expected.matrix(observed.pods, observed.ports, observed.protocols)
    wrong = differences(expected, observed)
    blocks = []
    for port, protocol in observed.cases():
        agree = {(p.source, p.target): want.connected[p] == v
                 for p, v in observed.connected.items() if (p.port, p.protocol) == (port, protocol)}
        blocks.append("\n".join([
            f"{port}/{protocol} expected", want.table(port, protocol).render(),
            f"{port}/{protocol} observed", observed.table(port, protocol).render(),
            f"{port}/{protocol} comparison", TruthTable(observed.pods, agree).render()]))
    total = len(observed.connected)
    summary = f"{total - len(wrong)} of {total} probes as expected"
    return "\n\n".join([*blocks, "\n".join([summary, *map(str, wrong)])])
