"""compile_state + the datapath's lookup (emulate.py) == Kubernetes' semantics evaluated
on the objects themselves (reference.py), for random pods, namespaces and policies and
every (source, destination, protocol, port) among them, one direction at a time.

The one documented difference is allowed for: a named egress port is compiled per peer
identity, so when another pod shares the destination's identity, its port of that name
(or its address in a block) also opens the destination; there the compiled side must
allow at least what Kubernetes allows. SCTP is not probed: the programs read no SCTP
ports (docs/netpol.md)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from podlab.cni.policy import compile_state
from tests.unit.policy import emulate, reference
from tests.unit.policy.build import NODES, Obj

NAMESPACES = ("x", "y")
POD_LABELS: dict[str, tuple[str, ...]] = {"pod": ("a", "b"), "app": ("web", "db")}
NS_LABELS: dict[str, tuple[str, ...]] = {"team": ("a", "b"),
                                         "kubernetes.io/metadata.name": NAMESPACES}
CIDRS = ("10.0.0.0/16", "10.0.0.0/24", "10.0.1.0/24", "10.0.0.0/30", "0.0.0.0/0",
         "203.0.113.0/24")
EXCEPTS = ("10.0.0.0/29", "10.0.0.4/30", "10.0.1.0/25", "10.0.0.0/24", "10.0.0.2/31",
           "203.0.113.128/25", "10.0.1.0/24")
ELSEWHERE = ("10.0.0.9", "10.0.1.200", "203.0.113.200", "198.51.100.1")  # no pod's
PROBES = [(p, n) for p in ("TCP", "UDP") for n in (80, 81, 8080)] + [("ICMP", 0)]


def label_sets(pool: dict[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(sorted(pool)), st.just("")).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(pool[k]) for k in keys}))


def selectors(pool: dict[str, tuple[str, ...]]) -> st.SearchStrategy[Obj]:
    def expression(key: str) -> st.SearchStrategy[Obj]:
        return st.one_of(
            st.builds(lambda op, vs: {"key": key, "operator": op, "values": vs},
                      st.sampled_from(["In", "NotIn"]),
                      st.lists(st.sampled_from(pool[key]), min_size=1, unique=True)),
            st.builds(lambda op: {"key": key, "operator": op},
                      st.sampled_from(["Exists", "DoesNotExist"])))
    exprs = st.lists(st.sampled_from(sorted(pool)).flatmap(expression), max_size=2)
    either = st.builds(lambda m, e: {**({"matchLabels": m} if m else {}),
                                     **({"matchExpressions": e} if e else {})},
                       label_sets(pool), exprs)
    one_label = st.sampled_from(sorted(pool)).flatmap(
        lambda k: st.sampled_from(pool[k]).map(lambda v: {"matchLabels": {k: v}}))
    return st.one_of(st.just({}), one_label, either)  # weighted to select something


def _inside(inner: str, outer: str) -> bool:
    a, b = ipaddress.IPv4Network(inner), ipaddress.IPv4Network(outer)
    return a.subnet_of(b) and a.prefixlen > b.prefixlen


@st.composite
def blocks(draw: st.DrawFn) -> Obj:
    cidr = draw(st.sampled_from(CIDRS))
    inside = [e for e in EXCEPTS if _inside(e, cidr)]
    excepts = draw(st.lists(st.sampled_from(inside), max_size=1)) if inside else []
    return {"ipBlock": {"cidr": cidr, **({"except": excepts} if excepts else {})}}


peers = st.one_of(
    st.builds(lambda p: {"podSelector": p}, selectors(POD_LABELS)),
    st.builds(lambda n: {"namespaceSelector": n}, selectors(NS_LABELS)),
    st.builds(lambda p, n: {"podSelector": p, "namespaceSelector": n},
              selectors(POD_LABELS), selectors(NS_LABELS)),
    blocks())


@st.composite
def port_entries(draw: st.DrawFn) -> Obj:
    entry: Obj = {}
    protocol = draw(st.sampled_from([None, None, "TCP", "UDP", "SCTP"]))
    if protocol:
        entry["protocol"] = protocol
    port = draw(st.sampled_from([None, 80, 81, "http", "http", "dns"]))
    if port is not None:
        entry["port"] = port
    if isinstance(port, int) and draw(st.booleans()):
        entry["endPort"] = port + 1
    return entry


def rules(peers_field: str, peer: st.SearchStrategy[Obj]) -> st.SearchStrategy[Obj]:
    return st.builds(
        lambda ps, ports: {**({peers_field: ps} if ps is not None else {}),
                           **({"ports": ports} if ports is not None else {})},
        sometimes_none(st.lists(peer, min_size=1, max_size=2)),
        sometimes_none(st.lists(port_entries(), min_size=1, max_size=2)))


def sometimes_none(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`values`, or None a quarter of the time: a rule with neither peers nor ports allows
    everything and would hide what its neighbours do."""
    return st.one_of(st.none(), values, values, values)


@st.composite
def policy_lists(draw: st.DrawFn, peer: st.SearchStrategy[Obj] = peers) -> list[Obj]:
    policies = []
    for i in range(draw(st.integers(1, 4))):
        spec: Obj = {"podSelector": draw(selectors(POD_LABELS))}
        for direction, field in (("ingress", "from"), ("egress", "to")):
            found = draw(st.none() | st.lists(rules(field, peer), min_size=1, max_size=3))
            if found is not None:
                spec[direction] = found
        types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
        if types:
            spec["policyTypes"] = types
        policies.append({"metadata": {"name": f"p{i}", "namespace": draw(
            st.sampled_from(NAMESPACES))}, "spec": spec})
    return policies


container_ports = st.lists(
    st.tuples(st.sampled_from(["http", "dns"]), st.sampled_from(["TCP", "TCP", "UDP"]),
              st.sampled_from([80, 81, 8080])), min_size=1, max_size=2, unique_by=lambda p: p[0])


@st.composite
def pod_lists(draw: st.DrawFn) -> list[Obj]:
    pods = []
    for i in range(draw(st.integers(1, 6))):
        node = draw(st.sampled_from(sorted(NODES)))
        kind = draw(st.sampled_from(["pod"] * 6 + ["hostNetwork", "finished"]))
        pods.append({
            "metadata": {"name": f"q{i}", "namespace": draw(st.sampled_from(NAMESPACES)),
                         "labels": draw(label_sets(POD_LABELS))},
            "spec": {"nodeName": node, "hostNetwork": kind == "hostNetwork",
                     "containers": [{"name": "c", "ports": [
                         {"name": n, "protocol": p, "containerPort": c}
                         for n, p, c in draw(container_ports)]}]},
            "status": {"phase": "Succeeded" if kind == "finished" else "Running",
                       "podIP": NODES[node] if kind == "hostNetwork" else f"10.0.{i % 2}.{i + 1}"}})
    return pods


namespace_lists = st.lists(st.builds(
    lambda name, labels: {"metadata": {"name": name, "labels": labels}},
    st.sampled_from(NAMESPACES), label_sets({"team": ("a", "b")})),
    max_size=3, unique_by=lambda ns: ns["metadata"]["name"])


def _twinned(cluster: reference.Cluster, ip: str) -> bool:
    """Whether another running pod has the identity (namespace, labels) of `ip`'s pod."""
    pod = cluster.pod_at(ip)
    if pod is None:
        return False

    def who(p: Obj) -> tuple[str, Any]:
        return p["metadata"]["namespace"], p["metadata"].get("labels") or {}

    running = (cluster.pod_at(q["status"]["podIP"]) for q in cluster.pods)
    return any(p is not None and p is not pod and who(p) == who(pod) for p in running)


def check(pods: list[Obj], namespaces: list[Obj], policies: list[Obj]) -> None:
    """Every ordered pair of addresses, each probe, each direction."""
    states = {node: compile_state(pods, namespaces, policies, node=node, host_ips=[ip])
              for node, ip in NODES.items()}
    cluster = reference.Cluster(pods, namespaces, policies,
                                {node: [ip] for node, ip in NODES.items()})
    addresses = sorted({p["status"]["podIP"] for p in pods} | set(ELSEWHERE)
                       | set(NODES.values()))
    for src in addresses:
        for dst in addresses:
            if src == dst:
                continue
            for protocol, port in PROBES:
                want = reference.ingress_allowed(cluster, src, dst, protocol, port)
                got = emulate.ingress_allowed(states, src, dst, protocol, port)
                assert got == want, ("ingress", src, dst, protocol, port)
                want = reference.egress_allowed(cluster, src, dst, protocol, port)
                got = emulate.egress_allowed(states, src, dst, protocol, port)
                if _twinned(cluster, dst):
                    assert got or not want, ("egress", src, dst, protocol, port)
                else:
                    assert got == want, ("egress", src, dst, protocol, port)


@settings(max_examples=300)
@given(pod_lists(), namespace_lists, policy_lists())
def test_compiled_policy_is_kubernetes_semantics(pods: list[Obj], namespaces: list[Obj],
                                                 policies: list[Obj]) -> None:
    check(pods, namespaces, policies)


@st.composite
def port_policy_lists(draw: st.DrawFn) -> list[Obj]:
    """Policies isolating every pod of their namespace both ways, with rules that name
    peers (blocks, or whole namespaces) and ports: where blocks and ports decide."""
    peer: st.SearchStrategy[Obj] = st.one_of(blocks(), st.just({"podSelector": {}}),
                                             st.just({"namespaceSelector": {}}))
    return [{"metadata": {"name": f"p{i}", "namespace": namespace}, "spec": {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
        "ingress": draw(st.lists(st.builds(lambda ps, ports: {"from": ps, "ports": ports},
                                           st.lists(peer, min_size=1, max_size=2),
                                           st.lists(port_entries(), min_size=1,
                                                    max_size=2)), max_size=2)),
        "egress": draw(st.lists(st.builds(lambda ps, ports: {"to": ps, "ports": ports},
                                          st.lists(peer, min_size=1, max_size=2),
                                          st.lists(port_entries(), min_size=1,
                                                   max_size=2)), max_size=2))}}
        for i, namespace in enumerate(draw(st.lists(st.sampled_from(NAMESPACES),
                                                    min_size=1, max_size=2)))]


@settings(max_examples=300)
@given(pod_lists(), namespace_lists, port_policy_lists())
def test_blocks_and_ports_are_kubernetes_semantics(pods: list[Obj], namespaces: list[Obj],
                                                   policies: list[Obj]) -> None:
    check(pods, namespaces, policies)
