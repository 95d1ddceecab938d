"""The agent's flow log: numbered without gaps, bounded, read after a sequence number with
filters, and a reader that waits is woken by the next flow."""

from __future__ import annotations

import threading
from typing import Any

from podlab.cni.flowlog import FlowLog, describe
from podlab.cni.policywatch import Compiled
from podlab.datapath.bpf import Flow
from podlab.datapath.bpf.policy_model import WORLD_IDENTITY, Endpoint, PolicyState


def flow(src: str, dst: str, verdict: str = "dropped") -> dict[str, Any]:
    return {"verdict": verdict, "src": {"pod": src}, "dst": {"pod": dst}}


def seqs(answer: dict[str, Any]) -> list[int]:
    return [r["seq"] for r in answer["flows"]]


def test_a_drop_is_named_by_the_last_compile() -> None:
    state = PolicyState(pods={"10.0.0.1": 300, "10.0.0.2": 301},
                        endpoints={"10.0.0.2": Endpoint("10.0.0.2", 301, frozenset(), None,
                                                        ("y/deny", "y/web"), ())},
                        labels={300: "ns=x app=a", 301: "ns=y app=web"})
    compiled = Compiled(state, {"10.0.0.1": "x/a", "10.0.0.2": "y/web"})
    drop = Flow(ts_ns=1_500_000_000, verdict="dropped", direction="ingress",
                reason="default-deny", protocol="tcp", src="10.0.0.1", dst="10.0.0.2",
                sport=40000, dport=80, src_identity=300, dst_identity=301, endpoint="10.0.0.2")
    assert describe(drop, compiled, "n1", wall_offset_ns=1_764_590_400_000_000_000) == {
        "time": "2025-12-01T12:00:01.500Z", "node": "n1", "verdict": "dropped",
        "direction": "ingress", "reason": "default-deny", "protocol": "tcp",
        "src": {"ip": "10.0.0.1", "port": 40000, "pod": "x/a", "identity": 300,
                "labels": "ns=x app=a"},
        "dst": {"ip": "10.0.0.2", "port": 80, "pod": "y/web", "identity": 301,
                "labels": "ns=y app=web"},
        "policies": ["y/deny", "y/web"]}
    out = Flow(ts_ns=0, verdict="allowed", direction="egress", reason="not-isolated",
               protocol="udp", src="10.0.0.2", dst="8.8.8.8", sport=5353, dport=53,
               src_identity=301, dst_identity=WORLD_IDENTITY, endpoint="10.0.0.2")
    named = describe(out, compiled, "n1", 0)
    assert named["policies"] == [], "not isolated for egress"
    assert (named["dst"]["pod"], named["dst"]["labels"]) == ("", "")


def test_flows_after_a_sequence_number_with_filters_and_a_limit() -> None:
    log = FlowLog()
    log.append([flow("x/a", "y/b"), flow("x/c", "x/a", "allowed"), flow("z/d", "y/b")])
    assert seqs(log.after(0)) == [1, 2, 3]
    assert seqs(log.after(1)) == [2, 3]
    assert seqs(log.after(0, pod="x/a")) == [1, 2], "from or to the pod"
    assert seqs(log.after(0, verdict="allowed")) == [2]
    assert log.after(0, pod="y/b", verdict="allowed")["flows"] == []
    first = log.after(0, limit=2)
    assert (seqs(first), first["last"]) == ([1, 2], 2), "the next read goes on from 2"
    rest = log.after(first["last"], limit=2)
    assert (seqs(rest), rest["last"]) == ([3], 3)
    assert log.after(3) == {"epoch": log.epoch, "flows": [], "last": 3, "missed": 0}


def test_the_log_is_bounded_and_says_what_a_slow_reader_missed() -> None:
    log = FlowLog(capacity=3)
    log.append(flow("x/a", "y/b") for _ in range(5))
    answer = log.after(0)
    assert (seqs(answer), answer["missed"]) == ([3, 4, 5], 2)
    assert log.after(3)["missed"] == 0
    assert FlowLog().epoch != log.epoch, "a new agent's log is told apart"


def test_a_waiting_reader_is_woken_by_the_next_matching_flow() -> None:
    log = FlowLog()
    answers: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: answers.append(
        log.after(0, verdict="dropped", wait=30)))
    reader.start()
    log.append([flow("x/a", "y/b", "allowed")])  # not what it waits for
    log.append([flow("x/a", "y/b")])
    reader.join(30)
    assert seqs(answers[0]) == [2]
    assert log.after(2, wait=0.05)["flows"] == [], "an empty wait ends"
