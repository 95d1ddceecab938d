"""Identities are numbers every node computes alike: from what they stand for, not from
the order objects arrive in."""

from __future__ import annotations

import hashlib

from podlab.cni.policy import compile_state
from podlab.cni.policy.identities import assign
from podlab.datapath.bpf.policy_model import FIRST_CIDR_IDENTITY, FIRST_POD_IDENTITY
from tests.unit.policy.build import NODES, labels, namespace, pod, policy

PODS = [pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2", node="n2"),
        pod("y", "a", "10.0.1.1"), pod("x", "a2", "10.0.0.3", labels={"pod": "a"})]
BLOCK = [policy("x", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                          "except": ["10.0.3.0/24"]}}]}])]


def test_the_same_objects_in_any_order_give_the_same_numbers_on_every_node() -> None:
    one = compile_state(PODS, [namespace("x")], BLOCK, node="n1", host_ips=[NODES["n1"]])
    other = compile_state(PODS[::-1], [namespace("x")], BLOCK, node="n2",
                          host_ips=[NODES["n2"]])
    assert {ip: i for ip, i in one.pods.items() if ip != NODES["n1"]} == \
        {ip: i for ip, i in other.pods.items() if ip != NODES["n2"]}
    assert one.cidrs == other.cidrs


def test_pods_share_an_identity_exactly_when_namespace_and_labels_agree() -> None:
    state = compile_state(PODS, [], [], node="n1", host_ips=[])
    assert state.pods["10.0.0.1"] == state.pods["10.0.0.3"]
    assert len({state.pods["10.0.0.1"], state.pods["10.0.0.2"], state.pods["10.0.1.1"]}) == 3
    assert all(FIRST_POD_IDENTITY <= i < FIRST_CIDR_IDENTITY for i in state.pods.values())


def test_namespace_labels_are_part_of_an_identity() -> None:
    plain = compile_state(PODS, [namespace("x")], [], node="n1", host_ips=[])
    labelled = compile_state(PODS, [namespace("x", team="a")], [], node="n1", host_ips=[])
    assert plain.pods["10.0.0.1"] != labelled.pods["10.0.0.1"]
    assert plain.pods["10.0.1.1"] == labelled.pods["10.0.1.1"]
    missing = compile_state(PODS, [], [], node="n1", host_ips=[])
    assert missing.pods["10.0.0.1"] == plain.pods["10.0.0.1"], \
        "a namespace object without labels still has kubernetes.io/metadata.name"


def test_cidr_identities_are_in_their_range() -> None:
    state = compile_state(PODS, [], BLOCK, node="n1", host_ips=[])
    assert set(state.cidrs) == {"10.0.0.0/16", "10.0.3.0/24"}
    assert all(i >= FIRST_CIDR_IDENTITY for i in state.cidrs.values())


def _slot(text: str, span: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % span


def test_a_collision_goes_to_the_next_free_number_in_sorted_order() -> None:
    span = 7
    words = [f"k{i}" for i in range(100)]
    home = _slot(words[0], span)
    clash = sorted([w for w in words if _slot(w, span) == home][:3])
    assert len(clash) == 3
    numbers = assign(clash[::-1], str, 100, 100 + span)
    assert [numbers[w] for w in clash] == [100 + (home + i) % span for i in range(3)]


def test_selectors_see_identities_not_pods() -> None:
    """Two pods of one identity are selected together."""
    pols = [policy("x", "p", labels(pod="a"))]
    state = compile_state(PODS, [], pols, node="n1", host_ips=[])
    assert state.endpoints["10.0.0.1"].ingress == frozenset()
    assert state.endpoints["10.0.0.3"].ingress == frozenset()
    assert state.endpoints["10.0.1.1"].ingress is None
