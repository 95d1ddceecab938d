"""`podlab flows` without a lab behind it: one error line with the next step, and a flow
printed in `hubble observe`'s order."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from podlab.cni import protocol
from podlab.cni.flowlog import FlowLog
from podlab.lab import flows_cli
from podlab.lab.cli import main
from podlab.lab.flows_cli import line
from tests.unit.fake_labs import fake_lab


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("argv", "proxy", "says"), [
    (["--node", "n9"], "ebpf", "lab 'lab' has no node 'n9'; its nodes are in `"),
    ([], "iptables", "node n1 of lab 'lab' serves Services by iptables and enforces no "
                     "NetworkPolicy, so it has no flows; a lab that enforces it: `"),
    (["--node", "n2"], "ebpf", "cannot read the flows of node n2: no agent answers on "),
])
def test_an_error_is_one_line_with_the_next_step(
        run_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], proxy: str,
        says: str) -> None:
    state = fake_lab(run_dir, "lab")
    for node in state.nodes:
        node.service_proxy = proxy
    state.save()
    assert main(["flows", "--name", "lab", *argv]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    (error,) = out.err.splitlines()
    assert says in error
    assert error.endswith("`"), "it ends with the command to run next"


def flow(protocol: str, port: int, policies: list[str]) -> dict[str, object]:
    return {"time": "2026-12-01T12:40:02.114Z", "node": "n1", "verdict": "dropped",
            "direction": "ingress", "reason": "default-deny", "protocol": protocol,
            "src": {"ip": "10.0.0.5", "port": 41234, "pod": "x/a", "identity": 300},
            "dst": {"ip": "10.0.1.7", "port": port, "pod": "", "identity": 2},
            "policies": policies}


def test_a_flow_reads_as_hubble_prints_one() -> None:
    assert line(flow("tcp", 80, ["y/deny", "y/web"])) == (
        "Dec  1 12:40:02.114 n1: x/a (identity 300) -> 10.0.1.7 (identity 2) :80/tcp "
        "ingress DROPPED default-deny (policies: y/deny, y/web)")
    assert line(flow("icmp", 0, [])).endswith(
        "-> 10.0.1.7 (identity 2) icmp ingress DROPPED default-deny (policies: none)")


def test_a_follower_reads_a_restarted_agents_log_from_its_start(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent answers from its FlowLog; a restart is a new log (new epoch, seq from 1).
    logs = [FlowLog(), FlowLog()]
    logs[0].append([{"n": i} for i in range(5)])
    logs[1].append([{"n": i} for i in range(7)])  # more than the first had, all new
    agent = iter([logs[0], logs[1], logs[1]])
    asked: list[int] = []

    def call(_socket: str, op: str, *, after: int, **_: object) -> dict[str, object]:
        assert op == "flows"
        asked.append(after)
        return {"ok": True, **next(agent).after(after)}

    monkeypatch.setattr(protocol, "call", call)
    cursor = flows_cli.Cursor(fake_lab(run_dir, "lab").nodes[0],
                              argparse.Namespace(name="lab", pod=None, verdict=None))
    assert [r["n"] for r in cursor.read()] == [0, 1, 2, 3, 4]
    assert [r["n"] for r in cursor.read()] == [0, 1, 2, 3, 4, 5, 6], "none skipped"
    assert asked == [0, 5, 0]
