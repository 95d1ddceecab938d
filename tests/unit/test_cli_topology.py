"""`podlab up` flags build the same topologies a file would."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from podlab.fakecloud import TopologyError
from podlab.lab.cli import _parser, main, topology_from_args
from tests.unit.fake_labs import fake_lab


def up_args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["up", *argv])


def test_nodes_flag_alternates_vswitches() -> None:
    t = topology_from_args(up_args("--nodes", "3"))
    assert [n.vswitch.id for n in t.nodes] == ["vsw-a", "vsw-b", "vsw-a"]


def test_vswitch_and_node_flags() -> None:
    t = topology_from_args(up_args(
        "--vpc-cidr", "10.1.0.0/16",
        "--vswitch", "id=vsw-x,zone=cn-hangzhou-k,cidr=10.1.4.0/24",
        "--node", "name=big,type=ecs.g7.8xlarge,vswitch=vsw-x",
    ))
    (node,) = t.nodes
    assert (node.name, node.instance_type, str(node.vswitch.gateway)) == (
        "big", "ecs.g7.8xlarge", "10.1.4.253")


def test_malformed_flag_names_the_flag() -> None:
    with pytest.raises(TopologyError) as info:
        topology_from_args(up_args("--vswitch", "vsw-x"))
    assert info.value.field == "--vswitch"


def test_seed_flag_sets_the_world_seed(tmp_path: Path) -> None:
    assert topology_from_args(up_args()).seed == 0
    assert topology_from_args(up_args("--seed", "7")).seed == 7
    f = tmp_path / "lab.yaml"
    f.write_text("seed: 3\nvswitches: [{id: vsw-x, zone: z1, cidr: 192.168.8.0/24}]\n"
                 "nodes: [{name: a, vswitch: vsw-x}]\n")
    assert topology_from_args(up_args("--topology", str(f))).seed == 3
    assert topology_from_args(up_args("--topology", str(f), "--seed", "8")).seed == 8
    with pytest.raises(TopologyError) as info:
        topology_from_args(up_args("--seed", "-1"))
    assert info.value.field == "seed"


def test_status_shows_the_seed_and_the_cloud_timing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    state = fake_lab(tmp_path, "seeded")
    state.topology = {"seed": 7, "cloud": {"attach_delay": 0.5}}
    state.save()
    fake_lab(tmp_path, "plain")
    assert main(["status", "--name", "seeded"]) == 0
    assert ", seed 7, attach delay 0.5s\n" in capsys.readouterr().out
    assert main(["status", "--name", "seeded", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["seed"], summary["attach_delay"]) == (7, 0.5)
    assert main(["status", "--name", "plain"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(", seed 0")
    assert "delay" not in first
