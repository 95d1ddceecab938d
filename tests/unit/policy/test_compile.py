"""Each semantic rule of NetworkPolicy, through compile_state and the datapath's lookup
(emulate.py), on two namespaces x (team=a) and y (team=b) with pods a and b each:
x/a and y/a on n1, x/b and y/b on n2."""

from __future__ import annotations

from typing import Any

from podlab.cni.policy import compile_state
from podlab.datapath.bpf.policy_model import ANY_IDENTITY, HOST_IDENTITY, PolicyState, Rule
from tests.unit.policy.build import NODES, Obj, labels, namespace, pod, policy
from tests.unit.policy.emulate import allowed

XA, XB, YA, YB = "10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"
OUTSIDE = "203.0.113.9"
NAMESPACES = [namespace("x", team="a"), namespace("y", team="b")]
WEB = (("http", "TCP", 8080), ("dns", "UDP", 53))


def world(**ports: tuple[tuple[str, str, int], ...]) -> list[Obj]:
    """The four pods; `ports` by pod key without the slash ("xa": ...)."""
    return [pod(ns, name, ip, node=node, ports=ports.get(ns + name, ()))
            for ns, name, ip, node in (("x", "a", XA, "n1"), ("x", "b", XB, "n2"),
                                       ("y", "a", YA, "n1"), ("y", "b", YB, "n2"))]


def states(policies: list[Obj], pods: list[Obj] | None = None,
           namespaces: list[Obj] | None = None) -> dict[str, PolicyState]:
    return {node: compile_state(world() if pods is None else pods,
                                NAMESPACES if namespaces is None else namespaces, policies,
                                node=node, host_ips=[ip]) for node, ip in NODES.items()}


def reach(policies: list[Obj], src: str, dst: str, protocol: str = "tcp", port: int = 80,
          **kw: Any) -> bool:
    return allowed(states(policies, **kw), src, dst, protocol, port)


def into_xa(peers: list[Obj] | None, ports: list[Obj] | None = None) -> Obj:
    """A policy selecting x/a for ingress with one rule."""
    rule: Obj = {} if peers is None else {"from": peers}
    if ports is not None:
        rule["ports"] = ports
    return policy("x", "into-a", labels(pod="a"), ingress=[rule])


def test_without_policies_nothing_is_isolated() -> None:
    state = states([])["n1"]
    assert set(state.endpoints) == {XA, YA}
    assert all(e.ingress is None and e.egress is None for e in state.endpoints.values())
    assert reach([], XB, XA)
    assert reach([], OUTSIDE, YA)


def test_a_policy_without_rules_denies_its_pods_ingress_but_not_from_their_node() -> None:
    deny = [policy("x", "deny", labels(pod="a"))]
    endpoint = states(deny)["n1"].endpoints[XA]
    assert endpoint.ingress == frozenset()
    assert endpoint.ingress_policies == ("x/deny",)
    assert endpoint.egress is None
    assert endpoint.egress_policies == ()
    assert not reach(deny, XB, XA)
    assert not reach(deny, OUTSIDE, XA)
    assert reach(deny, NODES["n1"], XA), "a pod's own node is always allowed"
    assert not reach(deny, NODES["n2"], XA), "another node is just an address"
    assert reach(deny, XA, XB)
    assert reach(deny, XA, XA)


def test_policy_types_are_defaulted_from_the_rules() -> None:
    egress_only = [policy("x", "out", labels(pod="a"), egress=[{"to": [{"podSelector": {}}]}])]
    endpoint = states(egress_only)["n1"].endpoints[XA]
    assert endpoint.ingress == frozenset(), "Ingress is always a default type"
    assert endpoint.egress, "Egress because there are egress rules"
    listed = [policy("x", "out", labels(pod="a"), ingress=[], types=["Egress"])]
    endpoint = states(listed)["n1"].endpoints[XA]
    assert endpoint.ingress is None
    assert endpoint.egress == frozenset()
    assert not reach(listed, XA, XB)
    assert reach(listed, XA, NODES["n1"]), "its own node, even under default deny"
    assert reach(listed, XB, XA)


def test_a_pod_selector_alone_means_the_policys_namespace() -> None:
    pols = [into_xa([{"podSelector": labels(pod="b")}])]
    assert reach(pols, XB, XA)
    assert not reach(pols, YB, XA)


def test_namespace_and_pod_selector_in_one_peer_are_and_in_two_peers_or() -> None:
    both = [into_xa([{"namespaceSelector": labels(team="b"), "podSelector": labels(pod="b")}])]
    assert reach(both, YB, XA)
    assert not reach(both, YA, XA)
    assert not reach(both, XB, XA)
    either = [into_xa([{"namespaceSelector": labels(team="b")},
                       {"podSelector": labels(pod="b")}])]
    assert reach(either, YB, XA)
    assert reach(either, YA, XA)
    assert reach(either, XB, XA)
    assert not reach(either, OUTSIDE, XA)


def test_an_empty_namespace_selector_is_every_namespace_and_names_are_labels() -> None:
    every = [into_xa([{"namespaceSelector": {}, "podSelector": labels(pod="b")}])]
    assert reach(every, YB, XA)
    assert reach(every, XB, XA)
    assert not reach(every, YA, XA)
    by_name = [into_xa([{"namespaceSelector": labels(**{"kubernetes.io/metadata.name": "y"})}])]
    unlabelled = [{"metadata": {"name": "x"}}, {"metadata": {"name": "y"}}]
    assert reach(by_name, YA, XA, namespaces=unlabelled)
    assert not reach(by_name, XB, XA, namespaces=unlabelled)


def test_match_expressions() -> None:
    def expr(op: str, *values: str) -> list[Obj]:
        return [into_xa([{"namespaceSelector": {}, "podSelector": {"matchExpressions": [
            {"key": "pod", "operator": op, "values": list(values)}]}}])]

    assert reach(expr("In", "b"), YB, XA)
    assert not reach(expr("In", "b"), YA, XA)
    assert reach(expr("NotIn", "b"), YA, XA)
    assert not reach(expr("NotIn", "b"), XB, XA)
    assert reach(expr("Exists"), YB, XA)
    assert not reach(expr("DoesNotExist"), YB, XA)


def test_empty_or_missing_peers_are_every_peer() -> None:
    peers: list[Obj] | None
    for peers in (None, []):
        pols = [into_xa(peers)]
        assert states(pols)["n1"].endpoints[XA].ingress == frozenset({Rule(ANY_IDENTITY)})
        assert reach(pols, OUTSIDE, XA)
        assert reach(pols, YB, XA)


def test_ip_block_minus_except_matches_pods_and_other_addresses() -> None:
    block = [into_xa([{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}])]
    assert reach(block, XB, XA), "a pod's address is matched by ipBlock"
    assert reach(block, "10.0.200.1", XA)
    assert not reach(block, YB, XA)
    assert not reach(block, OUTSIDE, XA)


def test_other_policies_prefixes_do_not_change_a_blocks_meaning() -> None:
    """The longest prefix may be another policy's; the rule still names it if it is in the
    block and outside the excepts."""
    pols = [into_xa([{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]),
            policy("y", "other", labels(pod="a"), ingress=[{"from": [
                {"ipBlock": {"cidr": "10.0.0.0/30"}}, {"ipBlock": {"cidr": "10.0.1.0/28"}},
                {"ipBlock": {"cidr": "10.0.0.0/8"}}]}])]
    state = states(pols)["n1"]
    assert set(state.cidrs) == {"10.0.0.0/16", "10.0.1.0/24", "10.0.0.0/30", "10.0.1.0/28",
                                "10.0.0.0/8"}
    assert reach(pols, XB, XA)  # 10.0.0.2: in the /30
    assert not reach(pols, YB, XA)  # 10.0.1.2: in the /28, inside the except
    assert not reach(pols, "10.1.0.1", XA)  # only in the /8
    assert reach(pols, "10.1.0.1", YA)


def test_ports_default_to_tcp_and_ranges_are_inclusive() -> None:
    pols = [into_xa(None, [{"port": 80}, {"protocol": "UDP", "port": 1000, "endPort": 1002}])]
    assert reach(pols, XB, XA, "tcp", 80)
    assert not reach(pols, XB, XA, "udp", 80)
    assert not reach(pols, XB, XA, "tcp", 81)
    assert all(reach(pols, XB, XA, "udp", p) for p in (1000, 1001, 1002))
    assert not reach(pols, XB, XA, "udp", 1003)
    assert not reach(pols, XB, XA, "tcp", 1001)
    assert not reach(pols, XB, XA, "icmp", 0)


def test_a_protocol_without_a_port_is_every_port_of_it() -> None:
    pols = [into_xa(None, [{"protocol": "UDP"}])]
    assert reach(pols, XB, XA, "udp", 9)
    assert not reach(pols, XB, XA, "tcp", 9)


def test_missing_ports_are_every_protocol() -> None:
    pols = [into_xa([{"podSelector": {}}])]
    assert reach(pols, XB, XA, "icmp", 0)
    assert reach(pols, XB, XA, "sctp", 7)


def test_sctp_is_compiled_as_sctp_and_never_lets_tcp_in() -> None:
    pols = [into_xa(None, [{"protocol": "SCTP", "port": 80}, {"protocol": "SCTP"}])]
    rules = states(pols)["n1"].endpoints[XA].ingress
    assert rules == frozenset({Rule(ANY_IDENTITY, 132, 80), Rule(ANY_IDENTITY, 132)})
    assert not reach(pols, XB, XA, "tcp", 80)


def test_a_named_ingress_port_is_the_local_pods_port_of_that_name_and_protocol() -> None:
    pods = world(xa=WEB)
    pols = [into_xa(None, [{"port": "http"}, {"protocol": "TCP", "port": "dns"}])]
    assert reach(pols, XB, XA, "tcp", 8080, pods=pods)
    assert not reach(pols, XB, XA, "tcp", 53, pods=pods), "dns is a UDP port"
    assert not reach(pols, XB, XA, "tcp", 80, pods=pods)
    rules = states(pols, pods)["n1"].endpoints[XA].ingress
    assert rules == frozenset({Rule(ANY_IDENTITY, 6, 8080)})
    nowhere = [into_xa(None, [{"port": "nope"}])]
    assert states(nowhere, pods)["n1"].endpoints[XA].ingress == frozenset()


def test_a_named_egress_port_is_each_peer_pods_own_port() -> None:
    pods = world(xb=(("http", "TCP", 8080),), yb=(("http", "TCP", 9090),))
    out = [policy("x", "out", labels(pod="a"), types=["Egress"], egress=[
        {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}])]
    assert reach(out, XA, XB, "tcp", 8080, pods=pods)
    assert reach(out, XA, YB, "tcp", 9090, pods=pods)
    assert not reach(out, XA, XB, "tcp", 9090, pods=pods)
    assert not reach(out, XA, YA, "tcp", 8080, pods=pods), "y/a has no port named http"


def test_a_named_egress_port_with_a_block_or_any_peer_resolves_against_the_pods() -> None:
    pods = world(xb=(("http", "TCP", 8080),), yb=(("http", "TCP", 8080),))
    block = [policy("x", "out", labels(pod="a"), types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"port": "http"}]}])]
    assert reach(block, XA, XB, "tcp", 8080, pods=pods)
    assert not reach(block, XA, YB, "tcp", 8080, pods=pods), "outside the block"
    assert not reach(block, XA, "10.0.0.77", "tcp", 8080, pods=pods), "no pod, no name"
    anyone = [policy("x", "out", labels(pod="a"), types=["Egress"],
                     egress=[{"ports": [{"port": "http"}]}])]
    assert reach(anyone, XA, YB, "tcp", 8080, pods=pods)
    assert not reach(anyone, XA, OUTSIDE, "tcp", 8080, pods=pods)


def test_policies_combine_as_a_union() -> None:
    pols = [into_xa([{"podSelector": labels(pod="b")}], [{"port": 80}]),
            policy("x", "more", labels(pod="a"), ingress=[
                {"from": [{"namespaceSelector": labels(team="b")}], "ports": [{"port": 81}]}])]
    endpoint = states(pols)["n1"].endpoints[XA]
    assert endpoint.ingress_policies == ("x/into-a", "x/more")
    assert reach(pols, XB, XA, "tcp", 80)
    assert not reach(pols, XB, XA, "tcp", 81)
    assert reach(pols, YB, XA, "tcp", 81)
    assert not reach(pols, YB, XA, "tcp", 80)


def test_the_address_map_holds_running_pod_network_pods_and_the_node() -> None:
    pods = [*world(),
            pod("x", "host", NODES["n2"], node="n2", labels={}) | {"spec": {"hostNetwork": True}},
            pod("x", "done", "10.0.0.9", phase="Succeeded"), pod("x", "failed", "10.0.0.10",
                                                                 phase="Failed"),
            pod("x", "pending", None), pod("x", "six", "fd00::1")]
    state = compile_state(pods, NAMESPACES, [], node="n1", host_ips=[NODES["n1"]])
    assert set(state.pods) == {XA, XB, YA, YB, NODES["n1"]}
    assert state.pods[NODES["n1"]] == HOST_IDENTITY
    assert state.labels[state.pods[XB]] == "ns=x pod=b"
    assert state.labels[HOST_IDENTITY] == "host"


def test_an_address_two_pods_claim_is_the_live_pods_whatever_their_order() -> None:
    # x/a is terminating and its address already went to x/new (no policy selects it).
    old = pod("x", "a", XA)
    old["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    deny = [policy("x", "deny", labels(pod="a"))]
    for pods in ([old, pod("x", "new", XA)], [pod("x", "new", XA), old]):
        state = compile_state(pods, NAMESPACES, deny, node="n1", host_ips=[NODES["n1"]])
        assert state.endpoints[XA].ingress is None, "the new pod's (no) policy applies"
        assert state.labels[state.pods[XA]] == "ns=x pod=new"


def test_block_labels_name_their_prefix() -> None:
    state = states([into_xa([{"ipBlock": {"cidr": "10.9.0.1/16"}}])])["n1"]
    assert state.cidrs == {"10.9.0.0/16": state.cidrs["10.9.0.0/16"]}
    assert state.labels[state.cidrs["10.9.0.0/16"]] == "cidr:10.9.0.0/16"


def test_a_named_egress_port_is_per_identity_so_twins_share_their_numbers() -> None:
    """The documented over-approximation: x/b and its twin (same namespace and labels)
    name http differently; each is reachable on both numbers."""
    twin = pod("x", "b2", "10.0.0.3", node="n2", labels={"pod": "b"},
               ports=(("http", "TCP", 9090),))
    pods = [*world(xb=(("http", "TCP", 8080),)), twin]
    out = [policy("x", "out", labels(pod="a"), types=["Egress"], egress=[
        {"to": [{"podSelector": labels(pod="b")}], "ports": [{"port": "http"}]}])]
    assert reach(out, XA, XB, "tcp", 8080, pods=pods)
    assert reach(out, XA, XB, "tcp", 9090, pods=pods), "Kubernetes would deny this one"
