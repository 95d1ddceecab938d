"""The cases of upstream's NetworkPolicy e2e test (kubernetes test/e2e/network/netpol/
network_policy.go, the "Netpol" describes), written from their semantics as data, so one
list drives both the compiler's unit runner and the lab's e2e runner.

The model is upstream's: namespaces x, y, z with pods a, b, c each (labelled pod=<name>),
servers on TCP and UDP ports 80 and 81 (container ports serve-80-tcp, ...), every pair of
the nine pods probed. A case is its upstream title and its steps: apply a policy (the same
namespace/name again replaces it, as upstream's UpdatePolicy), delete one, relabel a pod or
a namespace, and expect a truth table for one port and protocol — upstream's ValidateOrFail.
Pod IPs exist only at run time, so an ipBlock policy is a function of the model's pod IPs.
A runner is a `World` (the API objects, or a lab) that `run` drives step by step.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from podlab.lab.reachability import Reachability

Obj = dict[str, Any]
PodIPs = Mapping[str, str]  # "ns/pod" -> its IP
NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Apply:
    """Create the policy, or replace the one of the same namespace and name."""

    policy: Obj | Callable[[PodIPs], Obj]

    def resolve(self, ips: PodIPs) -> Obj:
        return self.policy(ips) if callable(self.policy) else self.policy


@dataclass(frozen=True)
class Delete:
    namespace: str
    name: str


@dataclass(frozen=True)
class LabelPod:
    """Add `labels` to the pod "ns/name"; the runner restores its model labels after the case."""

    pod: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class LabelNamespace:
    namespace: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Expect:
    """Every pair's connectivity on `port`/`protocol` ("tcp"|"udp") is `reachability`."""

    port: int
    protocol: str
    reachability: Reachability


Step = Apply | Delete | LabelPod | LabelNamespace | Expect


class World(Protocol):
    """Where a case runs: it applies the steps and checks the expectations its own way
    (at once against a compiled state, or polled until a lab converges)."""

    def pod_ips(self) -> PodIPs: ...
    def apply(self, policy: Obj) -> None: ...
    def delete(self, namespace: str, name: str) -> None: ...
    def label_pod(self, pod: str, labels: Mapping[str, str]) -> None: ...
    def label_namespace(self, namespace: str, labels: Mapping[str, str]) -> None: ...
    def check(self, expect: Expect) -> None: ...


@dataclass(frozen=True)
class Case:
    """`name` is upstream's It() title; `origin` says which upstream context it is from."""

    name: str
    steps: tuple[Step, ...]
    origin: str = "Netpol"

    @property
    def id(self) -> str:
        return f"{self.origin}: {self.name}"


# --- policies as plain API dicts, built the way upstream's helpers build them ----------

def policy(name: str, pods: Obj | None = None, *, namespace: str = "x",
           ingress: list[Obj] | None = None, egress: list[Obj] | None = None) -> Obj:
    """A NetworkPolicy selecting `pods` (None: every pod of the namespace). As upstream's
    SetSpecIngressRules/SetSpecEgressRules, a direction given (even as []) is named in
    policyTypes, so `ingress=[]` is default deny, and `egress` alone isolates only egress."""
    spec: Obj = {"podSelector": pods or {},
                 "policyTypes": [t for t, rules in (("Ingress", ingress), ("Egress", egress))
                                 if rules is not None]}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def labels(**match: str) -> Obj:
    return {"matchLabels": match}


def expression(key: str, operator: str, *values: str) -> Obj:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


def in_namespace(name: str) -> Obj:
    """The namespace by its immutable name label, which the API server sets."""
    return labels(**{NAME_LABEL: name})


def peer(pods: Obj | None = None, namespaces: Obj | None = None) -> Obj:
    """Pods and/or namespaces by selector; both in one peer means both must match."""
    return {k: v for k, v in (("podSelector", pods), ("namespaceSelector", namespaces))
            if v is not None}


def ip_block(cidr: str, *excepted: str) -> Obj:
    return {"ipBlock": {"cidr": cidr, **({"except": list(excepted)} if excepted else {})}}


def port(number: int | str | None = None, protocol: str | None = None,
         end: int | None = None) -> Obj:
    """A rule's port: a number, a named port or none (every port of `protocol`); no
    protocol is TCP by the API's defaulting."""
    found: Obj = {"port": number, "protocol": protocol, "endPort": end}
    return {k: v for k, v in found.items() if v is not None}


def rule(*peers: Obj, ports: list[Obj] | None = None, key: str = "from") -> Obj:
    return {k: v for k, v in ((key, list(peers)), ("ports", ports)) if v}


def to(*peers: Obj) -> Obj:
    return rule(*peers, key="to")


def host(ip: str) -> str:
    return f"{ip}/32"


def around(ip: str) -> str:
    """The /4 holding `ip`: every pod of the model and much more (upstream's
    makeLargeCIDRForIP)."""
    return str(ipaddress.ip_network(f"{ip}/4", strict=False))


# --- expectations ----------------------------------------------------------------------

def reach(*changes: tuple[str, str, bool]) -> Reachability:
    """Everyone connected, then each (from, to, connected) in order, the last matching one
    winning — upstream's NewReachability(pods, true) and Expect/ExpectPeer calls. Pods are
    "ns/name", "ns/*", "*/name" or "*". A pod always reaches itself (loopback never meets
    the policy on eth0), where upstream ignores loopback."""
    table = Reachability(True)
    for source, target, connected in changes:
        table.expect(source, target, connected)
    return table.allow_loopback()


def tcp(number: int, *changes: tuple[str, str, bool]) -> Expect:
    return Expect(number, "tcp", reach(*changes))


def udp(number: int, *changes: tuple[str, str, bool]) -> Expect:
    return Expect(number, "udp", reach(*changes))


# --- the cases -------------------------------------------------------------------------

A = labels(pod="a")
B = labels(pod="b")
FROM_Y = peer(namespaces=in_namespace("y"))
NOT_X = expression(NAME_LABEL, "NotIn", "x")
INTO_X_DENIED = ("*", "x/*", False)
OUT_OF_X_DENIED = ("x/*", "*", False)
INTO_XA_DENIED = ("*", "x/a", False)
OUT_OF_XA_DENIED = ("x/a", "*", False)
ONLY_Y_INTO_XA = (("x/*", "x/a", False), ("z/*", "x/a", False))


def _from_y(name: str, *ports: Obj) -> Obj:
    return policy(name, A, ingress=[rule(FROM_Y, ports=list(ports))])


FROM_Y_POD_A = policy("allow-ns-y-pod-a-via-namespace-pod-selector", A,
                      ingress=[rule(peer(A, in_namespace("y")))])


def _egress_to_y_b(ips: PodIPs) -> Obj:
    return policy("allow-client-a-via-cidr-egress-rule", A,
                  egress=[to(ip_block(host(ips["y/b"])))])


def _egress_around_x_b(ips: PodIPs) -> Obj:
    return policy("allow-client-a-via-cidr-egress-rule", A,
                  egress=[to(ip_block(around(ips["x/b"]), host(ips["x/b"])))])


def _egress_to_x_b(name: str) -> Callable[[PodIPs], Obj]:
    def build(ips: PodIPs) -> Obj:
        return policy(name, A, egress=[to(ip_block(host(ips["x/b"])))])
    return build


def _ingress_from_b_egress_on_80() -> Obj:
    both = policy("allow-client-a-via-pod-selector", A, ingress=[rule(peer(B))],
                  egress=[{"ports": [port(80)]}])
    both["spec"]["policyTypes"] = ["Egress", "Ingress"]
    return both


_ALLOW_XA_FROM_XA = [rule(peer(A, in_namespace("x")))]

NETPOL: tuple[Case, ...] = (
    Case("should support a 'default-deny-ingress' policy", (
        Apply(policy("deny-ingress", ingress=[])), tcp(80, INTO_X_DENIED))),
    Case("should support a 'default-deny-all' policy", (
        Apply(policy("deny-all", ingress=[], egress=[])),
        tcp(80, INTO_X_DENIED, OUT_OF_X_DENIED))),
    Case("should enforce policy to allow traffic from pods within server namespace based on "
         "PodSelector", (
             Apply(policy("x-a-allows-x-b", A, ingress=[rule(peer(B))])),
             tcp(80, INTO_XA_DENIED, ("x/b", "x/a", True)))),
    Case("should enforce policy to allow ingress traffic for a target", (
        Apply(policy("deny-all", ingress=[])),
        Apply(policy("allow-all-to-a", A, ingress=[rule(peer({}, {}))])),
        tcp(80, ("*", "x/b", False), ("*", "x/c", False)))),
    Case("should enforce policy to allow ingress traffic from pods in all namespaces", (
        Apply(policy("allow-from-another-ns", A, ingress=[rule(peer(namespaces=labels()))])),
        tcp(80))),
    Case("should enforce policy to allow traffic only from a different namespace, based on "
         "NamespaceSelector", (
             Apply(_from_y("allow-client-a-via-ns-selector")), tcp(80, *ONLY_Y_INTO_XA))),
    Case("should enforce policy based on PodSelector with MatchExpressions", (
        Apply(policy("x-a-allows-x-b", A, ingress=[rule(peer(expression("pod", "In", "b")))])),
        tcp(80, INTO_XA_DENIED, ("x/b", "x/a", True)))),
    Case("should enforce policy based on NamespaceSelector with MatchExpressions", (
        Apply(policy("allow-ns-y-match-selector", A, ingress=[rule(peer(
            namespaces=expression(NAME_LABEL, "In", "y")))])),
        tcp(80, *ONLY_Y_INTO_XA))),
    Case("should enforce policy based on PodSelector or NamespaceSelector", (
        Apply(policy("allow-ns-y-match-selector", A, ingress=[rule(
            peer(namespaces=NOT_X), peer(B))])),
        tcp(80, ("x/a", "x/a", False), ("x/c", "x/a", False)))),
    Case("should enforce policy based on PodSelector and NamespaceSelector", (
        Apply(policy("allow-ns-y-podselector-and-nsselector", A, ingress=[rule(
            peer(B, NOT_X))])),
        tcp(80, INTO_XA_DENIED, ("y/b", "x/a", True), ("z/b", "x/a", True)))),
    Case("should enforce policy based on Multiple PodSelectors and NamespaceSelectors", (
        Apply(policy("allow-ns-y-z-pod-b-c", A, ingress=[rule(
            peer(expression("pod", "In", "b", "c"), NOT_X))])),
        tcp(80, ("x/*", "x/a", False), ("y/a", "x/a", False), ("z/a", "x/a", False)))),
    Case("should enforce policy based on any PodSelectors", (
        Apply(policy("allow-ns-x-pod-b-c", A, ingress=[rule(peer(B), peer(labels(pod="c")))])),
        tcp(80, INTO_XA_DENIED, ("x/b", "x/a", True), ("x/c", "x/a", True)))),
    Case("should enforce policy to allow traffic only from a pod in a different namespace based "
         "on PodSelector and NamespaceSelector", (
             Apply(FROM_Y_POD_A), tcp(80, INTO_XA_DENIED, ("y/a", "x/a", True)))),
    Case("should enforce policy based on Ports", (
        Apply(_from_y("allow-client-a-via-ns-selector", port(81, "TCP"))),
        tcp(81, *ONLY_Y_INTO_XA), tcp(80, INTO_XA_DENIED))),
    Case("should enforce multiple, stacked policies with overlapping podSelectors", (
        Apply(_from_y("allow-client-a-via-ns-selector", port(81, "TCP"))),
        tcp(81, *ONLY_Y_INTO_XA), tcp(80, INTO_XA_DENIED),
        Apply(_from_y("allow-client-a-via-ns-selector-80", port(80, "TCP"))),
        tcp(80, *ONLY_Y_INTO_XA))),
    Case("should support allow-all policy", (
        Apply(policy("allow-all", ingress=[{}])), tcp(80), tcp(81))),
    Case("should allow ingress access on one named port", (
        Apply(policy("allow-all", ingress=[{"ports": [port("serve-81-tcp")]}])),
        tcp(81), tcp(80, INTO_X_DENIED))),
    Case("should allow ingress access from namespace on one named port", (
        Apply(_from_y("allow-client-a-via-ns-selector-80", port("serve-80-tcp", "TCP"))),
        tcp(80, *ONLY_Y_INTO_XA), tcp(81, INTO_XA_DENIED))),
    Case("should allow egress access on one named port", (
        Apply(policy("allow-egress", egress=[{"ports": [port("serve-80-tcp")]}])),
        tcp(80), tcp(81, OUT_OF_X_DENIED))),
    Case("should enforce updated policy", (
        Apply(policy("allow-all-mutate-to-deny-all", ingress=[{}])), tcp(81),
        Apply(policy("allow-all-mutate-to-deny-all", ingress=[])), tcp(81, INTO_X_DENIED))),
    Case("should allow ingress access from updated namespace", (
        Apply(policy("allow-client-a-via-ns-selector", A, ingress=[rule(peer(
            namespaces=labels(ns2="updated")))])),
        tcp(80, INTO_XA_DENIED),
        LabelNamespace("y", {"ns2": "updated"}),
        tcp(80, INTO_XA_DENIED, ("y/*", "*", True)))),
    Case("should allow ingress access from updated pod", (
        Apply(policy("allow-client-a-via-pod-selector", A, ingress=[rule(peer(
            labels(pod="b", pod2="updated")))])),
        tcp(80, INTO_XA_DENIED),
        LabelPod("x/b", {"pod2": "updated"}),
        tcp(80, INTO_XA_DENIED, ("x/b", "x/a", True)))),
    Case("should deny ingress from pods on other namespaces", (
        Apply(policy("deny-empty-policy", ingress=[rule(peer(labels()))])),
        tcp(80, ("y/*", "x/*", False), ("z/*", "x/*", False)))),
    Case("should deny ingress access to updated pod", (
        Apply(policy("deny-ingress-via-label-selector", labels(target="isolated"),
                     ingress=[])),
        tcp(80),
        LabelPod("x/a", {"target": "isolated"}),
        tcp(80, INTO_XA_DENIED))),
    Case("should deny egress from pods based on PodSelector", (
        Apply(policy("deny-egress-pod-a", A, egress=[])), tcp(80, OUT_OF_XA_DENIED))),
    Case("should deny egress from all pods in a namespace", (
        Apply(policy("deny-egress-ns-x", egress=[])), tcp(80, OUT_OF_X_DENIED))),
    Case("should work with Ingress, Egress specified together", (
        Apply(_ingress_from_b_egress_on_80()),
        tcp(80, INTO_XA_DENIED, ("x/b", "x/a", True)),
        tcp(81, INTO_XA_DENIED, OUT_OF_XA_DENIED, ("x/b", "x/a", True)))),
    Case("should support denying of egress traffic on the client side (even if the server "
         "explicitly allows this traffic)", (
             Apply(policy("allow-to-ns-y-pod-a", A, egress=[to(peer(A, in_namespace("y")))])),
             Apply(policy("allow-from-xa-on-ya-match-selector", A, namespace="y",
                          ingress=_ALLOW_XA_FROM_XA)),
             Apply(policy("allow-from-xa-on-yb-match-selector", B, namespace="y",
                          ingress=_ALLOW_XA_FROM_XA)),
             tcp(80, OUT_OF_XA_DENIED, ("*", "y/a", False), ("x/a", "y/a", True),
                 ("*", "y/b", False)))),
    Case("should enforce egress policy allowing traffic to a server in a different namespace "
         "based on PodSelector and NamespaceSelector", (
             Apply(policy("allow-to-ns-y-pod-a", A, egress=[to(peer(A, in_namespace("y")))])),
             tcp(80, OUT_OF_XA_DENIED, ("x/a", "y/a", True)))),
    Case("should enforce ingress policy allowing any port traffic to a server on a specific "
         "protocol", (
             Apply(policy("allow-ingress-by-proto", A, ingress=[{"ports": [port(
                 protocol="TCP")]}])),
             tcp(80), udp(80, INTO_XA_DENIED))),
    Case("should enforce multiple ingress policies with ingress allow-all policy taking "
         "precedence", (
             Apply(policy("allow-ingress-port-80", ingress=[{"ports": [port(80)]}])),
             tcp(81, INTO_X_DENIED),
             Apply(policy("allow-ingress", ingress=[{}])), tcp(81))),
    Case("should enforce multiple egress policies with egress allow-all policy taking "
         "precedence", (
             Apply(policy("allow-egress-port-80", egress=[{"ports": [port(80)]}])),
             tcp(81, OUT_OF_X_DENIED),
             Apply(policy("allow-egress", egress=[{}])), tcp(81))),
    Case("should stop enforcing policies after they are deleted", (
        Apply(policy("deny-all", ingress=[], egress=[])),
        tcp(80, OUT_OF_X_DENIED, INTO_X_DENIED),
        Delete("x", "deny-all"), tcp(80))),
    Case("should allow egress access to server in CIDR block", (
        Apply(_egress_to_y_b), tcp(80, OUT_OF_XA_DENIED, ("x/a", "y/b", True)))),
    Case("should enforce except clause while egress access to server in CIDR block", (
        Apply(_egress_around_x_b), tcp(80, ("x/a", "x/b", False)))),
    Case("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", (
        Apply(_egress_around_x_b), tcp(80, ("x/a", "x/b", False)),
        Apply(_egress_to_x_b("allow-client-a-via-cidr-egress-rule")),
        tcp(80, OUT_OF_XA_DENIED, ("x/a", "x/b", True)))),
    Case("should enforce policies to check ingress and egress policies can be controlled "
         "independently based on PodSelector", (
             Apply(policy("allow-egress-for-target", A, egress=[{}])), tcp(80),
             Apply(policy("deny-ingress-via-label-selector", A, ingress=[])),
             tcp(80, INTO_XA_DENIED))),
    Case("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin "
         "doesn't support SCTP", (
             Apply(policy("deny-ingress", ingress=[])),
             Apply(policy("allow-only-sctp-ingress-on-port-81", A, ingress=[{"ports": [
                 port(81, "SCTP")]}])),
             tcp(81, INTO_X_DENIED))),
    Case("should properly isolate pods that are selected by a policy allowing SCTP, even if the "
         "plugin doesn't support SCTP", (
             Apply(policy("allow-only-sctp-ingress-on-port-80", A, ingress=[{"ports": [
                 port(80, "SCTP")]}])),
             tcp(81, INTO_XA_DENIED))),
    Case("should not allow access by TCP when a policy specifies only UDP", (
        Apply(policy("allow-only-udp-ingress-on-port-81", A, ingress=[{"ports": [
            port(81, "UDP")]}])),
        tcp(81, INTO_XA_DENIED), udp(81))),
    Case("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels "
         "using default ns label", (
             Apply(_from_y("allow-client-a-via-ns-selector-for-immutable-ns-label")),
             tcp(80, *ONLY_Y_INTO_XA))),
    Case("should enforce policy based on NamespaceSelector with MatchExpressions using default "
         "ns label", (
             Apply(policy("allow-ns-y-match-selector-for-immutable-ns-label", A, egress=[to(peer(
                 namespaces=expression(NAME_LABEL, "NotIn", "y")))])),
             tcp(80, ("x/a", "y/*", False)))),
)

UDP_CONTEXT = "Netpol [LinuxOnly] using UDP"
NETPOL_UDP: tuple[Case, ...] = (
    Case("should support a 'default-deny-ingress' policy", (
        Apply(policy("deny-all", ingress=[])), udp(80, INTO_X_DENIED)), UDP_CONTEXT),
    Case("should enforce policy based on Ports", (
        Apply(_from_y("allow-ingress-on-port-81-ns-x", port(81, "UDP"))),
        udp(81, *ONLY_Y_INTO_XA)), UDP_CONTEXT),
    Case("should enforce policy to allow traffic only from a pod in a different namespace based "
         "on PodSelector and NamespaceSelector", (
             Apply(FROM_Y_POD_A), udp(80, INTO_XA_DENIED, ("y/a", "x/a", True))), UDP_CONTEXT),
)

# Not in network_policy.go: endPort ranges (KEP-2079: port..endPort, both ends included),
# and an IP excepted by one policy's block but allowed by another's, the "IP overlapping
# both IPBlock.CIDR and IPBlock.Except" of upstream's title across two policies.
PODLAB = "podlab"
PODLAB_CASES: tuple[Case, ...] = (
    Case("endPort: should allow ingress on every port of a range", (
        Apply(_from_y("allow-ns-y-on-80-to-81", port(80, "TCP", end=81))),
        tcp(80, *ONLY_Y_INTO_XA), tcp(81, *ONLY_Y_INTO_XA), udp(80, INTO_XA_DENIED)), PODLAB),
    Case("endPort: should deny egress below a range's first port", (
        Apply(policy("allow-egress-81-to-90", egress=[{"ports": [port(81, "TCP", end=90)]}])),
        tcp(81), tcp(80, OUT_OF_X_DENIED)), PODLAB),
    Case("ipBlock: an IP excepted by one policy's block is allowed by another policy's block", (
        Apply(_egress_around_x_b), tcp(80, ("x/a", "x/b", False)),
        Apply(_egress_to_x_b("allow-client-a-to-x-b")), tcp(80)), PODLAB),
)

CASES: tuple[Case, ...] = NETPOL + NETPOL_UDP + PODLAB_CASES


def run(case: Case, world: World) -> None:
    """The case's steps in order, in `world`."""
    for step in case.steps:
        match step:
            case Apply():
                world.apply(step.resolve(world.pod_ips()))
            case Delete(namespace, name):
                world.delete(namespace, name)
            case LabelPod(pod, added):
                world.label_pod(pod, added)
            case LabelNamespace(namespace, added):
                world.label_namespace(namespace, added)
            case Expect():
                world.check(step)
