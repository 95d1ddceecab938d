"""The seeded draw and the nft rules of a link fault, without a kernel."""

from __future__ import annotations

import pytest

from podlab.lab.linkfaults import (
    PERIOD,
    LinkFault,
    LinkFaults,
    Match,
    residues,
    ruleset,
    table_name,
)
from podlab.lab.process import ProcessRef
from podlab.lab.state import LabState, NodeState, PodState


def test_the_same_seed_draws_the_same_residues_and_another_seed_others() -> None:
    assert residues(0.05, 7) == residues(0.05, 7)
    assert residues(0.05, 7) != residues(0.05, 8)
    assert len(residues(0.05, 7)) == PERIOD // 20
    assert all(0 <= r < PERIOD for r in residues(0.3, 1))
    assert residues(0, 7) == []
    assert residues(1, 7) == list(range(PERIOD))


def test_loss_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        residues(5, 7)


def test_table_is_named_for_the_lab() -> None:
    assert table_name("e2e-a1") == "podlab_e2e_a1_faults"


def test_rules_count_every_match_with_one_counter_and_drop_the_drawn_residues() -> None:
    text = ruleset("t", Match(("udp", "tcp"), "10.0.0.10", 53, replies=True), [6, 19])
    lines = [line.strip() for line in text.splitlines()]
    # Replaced whole, atomically: declare, delete, define.
    assert lines[:3] == ["table inet t {}", "delete table inet t", "table inet t {"]
    # The one seedable counter, `inc`; `random` cannot replay.
    assert f"numgen inc mod {PERIOD} {{ 6, 19 }} counter name dropped drop" in lines
    assert "random" not in text
    there = "meta l4proto { udp, tcp } ip daddr 10.0.0.10 th dport 53 jump lossy"
    back = "meta l4proto { udp, tcp } ip saddr 10.0.0.10 th sport 53 jump lossy"
    assert lines.count(there) == 1
    assert lines.count(back) == 1
    # Arriving packets only: a drop on output would fail the sender's send() with EPERM.
    assert "type filter hook prerouting priority raw; policy accept;" in lines
    assert "hook output" not in text


def test_one_way_match_and_ipv6_and_no_loss() -> None:
    text = ruleset("t", Match(("udp",), "fd00::/64", None), [])
    assert "meta l4proto { udp } ip6 daddr fd00::/64 jump lossy" in text
    assert "saddr" not in text
    assert not any(line.endswith(" drop") for line in text.splitlines())


def test_a_match_must_name_known_protocols_and_replies_need_a_side() -> None:
    with pytest.raises(ValueError, match="protocols"):
        Match(("icmp",))
    with pytest.raises(ValueError, match="replies"):
        Match(replies=True)


def test_a_dead_link_drops_every_match_without_a_set() -> None:
    text = ruleset("t", Match(("udp", "tcp"), "100.100.2.136/29", 53), residues(1.0, 7))
    assert "    counter name dropped drop" in text.splitlines()
    assert "numgen" not in text


def test_lab_faults_name_netns_as_lab_exec_does_and_take_the_lab_s_seed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LinkFault, "apply", lambda self: self)  # no nft here
    state = LabState("l1", ProcessRef(1, 0), "process", "netns", {}, fabric_netns="l1-vpc")
    state.nodes.append(NodeState("n1", "i-1", "t", "z", "vsw", "10.0.0.2", "m", "l1-n1", "g"))
    state.pods.append(PodState("default", "client", "n1", "l1-pod-client"))
    faults = LinkFaults("l1", seed=42, state=state)
    assert [faults.netns(t) for t in ("n1", "default/client", "vpc", "other")] == \
        ["l1-n1", "l1-pod-client", "l1-vpc", "other"]
    assert LinkFaults("l1").netns("n1") == "n1"  # alone: netns names only
    with pytest.raises(KeyError):
        faults.netns("default/nosuch")
    fault = faults.loss("n1", Match(port=53))
    assert (fault.netns, fault.seed, fault.drop) == ("l1-n1", 42, residues(0.05, 42))
    assert faults.loss("n1", Match(port=53), seed=3).seed == 3
