"""Pods, Namespaces and NetworkPolicies -> one node's `PolicyState`.

Selectors are evaluated against identities, not pods (pods of one identity have the
same labels and namespace, so no selector tells them apart), through label indexes that
memoise each distinct selector once per compile. What a policy contributes is computed
once and shared by every local pod it selects; only named ingress ports, which are the
local pod's own, are resolved per pod.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from podlab.cni.policy.identities import (
    IdentityKey,
    cidr_identities,
    describe,
    describe_cidr,
    pod_identities,
)
from podlab.cni.policy.objects import (
    NAME_LABEL,
    Block,
    Obj,
    Peer,
    PodFacts,
    Policy,
    PolicyRule,
    PortSpec,
    addressed_pods,
    namespace_labels,
    parse_policy,
)
from podlab.cni.policy.prefixes import PrefixSet
from podlab.cni.policy.selectors import LabelIndex
from podlab.datapath.bpf.policy_model import (
    ANY_IDENTITY,
    HOST_IDENTITY,
    WORLD_IDENTITY,
    Endpoint,
    PolicyState,
    Rule,
)

DIRECTIONS = ("ingress", "egress")


@dataclass(frozen=True)
class _Contribution:
    """One policy's rules for one direction, for every pod it selects; `named` are the
    (peer identities, port) pairs that wait for the local pod's named ports."""

    rules: frozenset[Rule] = frozenset()
    named: tuple[tuple[frozenset[int], PortSpec], ...] = ()


class Cluster:
    """The cluster's pods and namespaces indexed for one compile."""

    def __init__(self, pods: Iterable[PodFacts], namespaces: Iterable[Obj],
                 policies: Iterable[Policy]) -> None:
        self.pods = list(pods)
        self.policies = list(policies)
        ns_labels = dict(map(namespace_labels, namespaces))
        keys = {p.key: self._identity_key(p, ns_labels) for p in self.pods}
        self.identity_of: dict[IdentityKey, int] = pod_identities(keys.values())
        self.pod_identity = {p.key: self.identity_of[keys[p.key]] for p in self.pods}
        self.identities = LabelIndex({i: dict(k[1]) for k, i in self.identity_of.items()})
        for namespace, _, labels in self.identity_of:
            ns_labels.setdefault(namespace, labels)
        self.namespaces = LabelIndex({n: dict(labels) for n, labels in ns_labels.items()})
        self.in_namespace: dict[str, set[int]] = {}
        for (namespace, _, _), identity in self.identity_of.items():
            self.in_namespace.setdefault(namespace, set()).add(identity)
        blocks = {b for pol in self.policies for b in _blocks(pol)}
        self.cidr_of = cidr_identities(p for b in blocks for p in (b.cidr, *b.excepts))
        self.prefixes = PrefixSet(self.cidr_of)
        self._peers: dict[tuple[Peer, str], frozenset[int]] = {}
        self.named: dict[tuple[str, int], list[tuple[int, int, ipaddress.IPv4Address]]] = {}
        for pod in self.pods:  # (name, protocol) -> (identity, number, address) per pod
            for port in pod.ports:
                self.named.setdefault((port.name, port.protocol), []).append(
                    (self.pod_identity[pod.key], port.number, ipaddress.IPv4Address(pod.ip)))

    @staticmethod
    def _identity_key(pod: PodFacts, ns_labels: dict[str, tuple[tuple[str, str], ...]]
                      ) -> IdentityKey:
        labels = ns_labels.get(pod.namespace, ((NAME_LABEL, pod.namespace),))
        return pod.namespace, pod.labels, labels

    def selected(self, policy: Policy) -> set[int]:
        """The identities `policy` applies to."""
        return self.in_namespace.get(policy.namespace, set()) & \
            self.identities.select(policy.selector)

    def peer(self, peer: Peer, namespace: str) -> frozenset[int]:
        """The identities a peer names: pod identities, or for a block, CIDR identities."""
        own_namespace = peer.namespaces is None and peer.block is None
        memo = (peer, namespace if own_namespace else "")
        found = self._peers.get(memo)
        if found is None:
            found = self._peers[memo] = self._resolve(peer, namespace)
        return found

    def _resolve(self, peer: Peer, namespace: str) -> frozenset[int]:
        if peer.block is not None:
            return frozenset(self.cidr_of[p] for p in self.prefixes.allowed_by(peer.block))
        names = {namespace} if peer.namespaces is None else \
            self.namespaces.select(peer.namespaces)
        within = set().union(*(self.in_namespace.get(n, ()) for n in names))
        if peer.pods is not None:
            within &= self.identities.select(peer.pods)
        return frozenset(within)

    def named_egress(self, rule: PolicyRule, identities: frozenset[int],
                     spec: PortSpec) -> set[Rule]:
        """A named egress port: each peer pod's own number for it, by the pod's identity,
        for the pods among `identities` (the rule's peers) or in one of its blocks."""
        blocks = [p.block for p in rule.peers or () if p.block is not None]
        return {Rule(identity, spec.protocol, number)
                for identity, number, address in self.named.get((str(spec.port), spec.protocol), ())
                if rule.peers is None or identity in identities
                or any(_in_block(address, b) for b in blocks)}

    def contribution(self, policy: Policy, direction: str) -> _Contribution:
        rules: set[Rule] = set()
        named: list[tuple[frozenset[int], PortSpec]] = []
        for rule in getattr(policy, direction):
            identities = self._rule_peers(rule, policy.namespace)
            if rule.ports is None:
                rules.update(Rule(i) for i in identities)
                continue
            for spec in rule.ports:
                if not isinstance(spec.port, str):
                    rules.update(Rule(i, spec.protocol, spec.port or 0, spec.end_port)
                                 for i in identities)
                elif direction == "ingress":
                    named.append((identities, spec))
                else:
                    rules |= self.named_egress(rule, identities, spec)
        return _Contribution(frozenset(rules), tuple(named))

    def _rule_peers(self, rule: PolicyRule, namespace: str) -> frozenset[int]:
        if rule.peers is None:
            return frozenset((ANY_IDENTITY,))
        return frozenset().union(*(self.peer(p, namespace) for p in rule.peers))

    def labels(self) -> dict[int, str]:
        labels = {HOST_IDENTITY: "host", WORLD_IDENTITY: "world"}
        labels.update((i, describe(k)) for k, i in self.identity_of.items())
        labels.update((i, describe_cidr(p)) for p, i in self.cidr_of.items())
        return labels


def _blocks(policy: Policy) -> Iterable[Block]:
    for rules in (policy.ingress, policy.egress):
        for rule in rules or ():
            for peer in rule.peers or ():
                if peer.block is not None:
                    yield peer.block


def _in_block(address: ipaddress.IPv4Address, block: Block) -> bool:
    return address in block.cidr and not any(address in e for e in block.excepts)


class _Enforcement:
    """Which policies select each local identity, and what each contributes (computed
    once, for the first local pod it selects)."""

    def __init__(self, cluster: Cluster, local: set[int]) -> None:
        self.cluster = cluster
        self.selecting: dict[tuple[int, str], list[Policy]] = {}
        for policy in cluster.policies:
            for identity in cluster.selected(policy) & local:
                for direction in DIRECTIONS:
                    if getattr(policy, direction) is not None:
                        self.selecting.setdefault((identity, direction), []).append(policy)
        self._contributions: dict[tuple[str, str], _Contribution] = {}

    def _contribution(self, policy: Policy, direction: str) -> _Contribution:
        found = self._contributions.get((policy.key, direction))
        if found is None:
            found = self._contributions[policy.key, direction] = \
                self.cluster.contribution(policy, direction)
        return found

    def direction(self, pod: PodFacts, direction: str
                  ) -> tuple[frozenset[Rule] | None, tuple[str, ...]]:
        """The pod's rules for `direction` (None: not isolated) and the isolating policies."""
        policies = self.selecting.get((self.cluster.pod_identity[pod.key], direction))
        if not policies:
            return None, ()
        rules: set[Rule] = set()
        for policy in policies:
            contribution = self._contribution(policy, direction)
            rules |= contribution.rules
            for identities, spec in contribution.named:
                rules.update(Rule(i, spec.protocol, named.number) for named in pod.ports
                             if (named.name, named.protocol) == (spec.port, spec.protocol)
                             for i in identities)
        return frozenset(rules), tuple(sorted(p.key for p in policies))

    def endpoint(self, pod: PodFacts) -> Endpoint:
        ingress, ingress_policies = self.direction(pod, "ingress")
        egress, egress_policies = self.direction(pod, "egress")
        return Endpoint(pod.ip, self.cluster.pod_identity[pod.key], ingress, egress,
                        ingress_policies, egress_policies)


def compile_state(pods: Iterable[Obj], namespaces: Iterable[Obj], policies: Iterable[Obj],
                  *, node: str, host_ips: Iterable[str]) -> PolicyState:
    """What `node`'s maps hold for these objects (plain API dicts, networking.k8s.io/v1)."""
    facts = addressed_pods(pods)
    cluster = Cluster(facts, namespaces, map(parse_policy, policies))
    local = [p for p in facts if p.node == node]
    enforcement = _Enforcement(cluster, {cluster.pod_identity[p.key] for p in local})
    addresses = {p.ip: cluster.pod_identity[p.key] for p in facts}
    addresses.update(dict.fromkeys(host_ips, HOST_IDENTITY))
    return PolicyState(addresses, {str(p): i for p, i in cluster.cidr_of.items()},
                       {p.ip: enforcement.endpoint(p) for p in local}, cluster.labels())
