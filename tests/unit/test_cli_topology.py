"""`podlab up` flags build the same topologies a file would."""

from __future__ import annotations

import argparse

import pytest

from podlab.fakecloud import TopologyError
from podlab.lab.cli import _parser, topology_from_args


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
