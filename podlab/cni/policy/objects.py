"""Pods, Namespaces and NetworkPolicies (plain API dicts, networking.k8s.io/v1) read
into the few facts the compiler uses, with upstream's defaults applied again, so an
object that skipped the API server's defaulting means what it would mean in a cluster.

IPv4 only, as the datapath: an IPv6 pod address or ipBlock can match no packet here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podlab.cni.policy.selectors import Selector, parse_selector

NAME_LABEL = "kubernetes.io/metadata.name"  # the label the API server gives each namespace
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
FINISHED = ("Succeeded", "Failed")
Obj = dict[str, Any]
Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: a hashable label set


def _labels(meta: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def namespace_labels(ns: Obj) -> tuple[str, Labels]:
    """A namespace's name and labels, kubernetes.io/metadata.name included."""
    meta = ns.get("metadata") or {}
    name = str(meta.get("name", ""))
    return name, tuple(sorted({**_labels(meta), NAME_LABEL: name}.items()))


@dataclass(frozen=True)
class NamedPort:
    name: str
    protocol: int
    number: int


@dataclass(frozen=True)
class PodFacts:
    """A pod with an address on the pod network: not hostNetwork, not finished."""

    key: str  # ns/name
    namespace: str
    labels: Labels
    ip: str
    node: str
    ports: tuple[NamedPort, ...]  # its containers' named ports
    terminating: bool = False  # deleted, in its grace period


def pod_facts(pod: Obj) -> PodFacts | None:
    """The pod's facts, or None for a pod with no IPv4 address of its own."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in FINISHED:
        return None
    try:
        if ipaddress.ip_address(ip).version != 4:
            return None
    except ValueError:
        return None
    ports = tuple(
        NamedPort(str(p["name"]), PROTOCOLS.get(str(p.get("protocol") or "TCP"), 0),
                  int(p["containerPort"]))
        for c in spec.get("containers") or [] for p in c.get("ports") or []
        if p.get("name") and p.get("containerPort"))
    namespace = str(meta.get("namespace") or "default")
    return PodFacts(f"{namespace}/{meta.get('name', '')}", namespace,
                    tuple(sorted(_labels(meta).items())), str(ip),
                    str(spec.get("nodeName") or ""), ports,
                    bool(meta.get("deletionTimestamp")))


def addressed_pods(pods: Iterable[Obj]) -> list[PodFacts]:
    """The facts of the pods with an address, one pod per address. Two claim one when a
    terminating pod's address was given to a new pod before the API forgot the old one:
    the live pod has it, so its rules apply (then the lower ns/name, as on every node),
    never whichever a dict happened to keep."""
    chosen: dict[str, PodFacts] = {}
    for f in sorted((f for f in map(pod_facts, pods) if f is not None),
                    key=lambda f: (f.terminating, f.key)):
        chosen.setdefault(f.ip, f)
    return list(chosen.values())


@dataclass(frozen=True)
class Block:
    """An ipBlock: `cidr` minus its `excepts`."""

    cidr: ipaddress.IPv4Network
    excepts: tuple[ipaddress.IPv4Network, ...] = ()


@dataclass(frozen=True)
class Peer:
    """One `from`/`to` entry: pods by selector (namespaces None: the policy's own
    namespace; pods None: every pod of the namespaces), or `block` alone."""

    pods: Selector | None = None
    namespaces: Selector | None = None
    block: Block | None = None


@dataclass(frozen=True)
class PortSpec:
    """One `ports` entry: `port` a number (to `end_port`, 0 just it), a name, or None for
    every port of `protocol`."""

    protocol: int
    port: int | str | None = None
    end_port: int = 0


@dataclass(frozen=True)
class PolicyRule:
    """One ingress/egress rule. `peers` None: every peer (`from`/`to` empty or missing);
    `ports` None: every protocol and port. An empty tuple is what is left when every entry
    was one that matches nothing here (an IPv6 block, an unknown protocol)."""

    peers: tuple[Peer, ...] | None
    ports: tuple[PortSpec, ...] | None


@dataclass(frozen=True)
class Policy:
    """A NetworkPolicy. `ingress`/`egress` None: it does not isolate that direction."""

    key: str  # ns/name
    namespace: str
    selector: Selector
    ingress: tuple[PolicyRule, ...] | None
    egress: tuple[PolicyRule, ...] | None


def _network(text: Any) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _peer(obj: Obj) -> Peer | None:
    """None for a peer that matches no IPv4 address (an IPv6 or broken block, or none of
    the three fields, which the API refuses)."""
    if obj.get("ipBlock") is not None:
        block = obj["ipBlock"] or {}
        cidr = _network(block.get("cidr"))
        if cidr is None:
            return None
        excepts = (_network(e) for e in block.get("except") or [])
        return Peer(block=Block(cidr, tuple(sorted({e for e in excepts if e is not None}))))
    pods, namespaces = obj.get("podSelector"), obj.get("namespaceSelector")
    if pods is None and namespaces is None:
        return None
    return Peer(None if pods is None else parse_selector(pods),
                None if namespaces is None else parse_selector(namespaces))


def _port(obj: Obj) -> PortSpec | None:
    """None for a protocol the datapath has no number for (the API refuses it)."""
    protocol = PROTOCOLS.get(str(obj.get("protocol") or "TCP"))
    if protocol is None:
        return None
    port, end = obj.get("port"), obj.get("endPort")
    if isinstance(port, int):
        return PortSpec(protocol, port, end if isinstance(end, int) and end > port else 0)
    return PortSpec(protocol, None if port is None else str(port))


def _rule(obj: Obj, peers_field: str) -> PolicyRule:
    peers, ports = obj.get(peers_field), obj.get("ports")
    return PolicyRule(
        tuple(p for p in map(_peer, peers) if p is not None) if peers else None,
        tuple(p for p in map(_port, ports) if p is not None) if ports else None)


def parse_policy(obj: Obj) -> Policy:
    """policyTypes as upstream defaults them: Ingress, and Egress when there are egress
    rules, unless they are given."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    types = spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    rules = {
        direction: tuple(_rule(r, peers) for r in spec.get(direction) or [])
        if direction.capitalize() in types else None
        for direction, peers in (("ingress", "from"), ("egress", "to"))}
    return Policy(f"{namespace}/{meta.get('name', '')}", namespace,
                  parse_selector(spec.get("podSelector")), rules["ingress"], rules["egress"])
