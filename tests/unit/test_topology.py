"""Topology validation: every error names the field a user has to fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from podlab.fakecloud import Topology, TopologyError, default_topology, load_topology


def topo(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "region": "cn-hangzhou",
        "vpc": {"cidr": "10.0.0.0/16"},
        "vswitches": [
            {"id": "vsw-a", "zone": "cn-hangzhou-i", "cidr": "10.0.0.0/24"},
            {"id": "vsw-b", "zone": "cn-hangzhou-j", "cidr": "10.0.1.0/24"},
        ],
        "nodes": [
            {"name": "n1", "instance_type": "ecs.g7.large", "vswitch": "vsw-a"},
            {"name": "n2", "instance_type": "ecs.c7.xlarge", "vswitch": "vsw-b"},
        ],
    }
    data.update(overrides)
    return data


def error(data: dict[str, Any]) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        Topology.from_dict(data)
    return info.value


def test_overlapping_vswitch_cidr_names_the_field() -> None:
    e = error(topo(vswitches=[
        {"id": "vsw-a", "zone": "z", "cidr": "10.0.0.0/24"},
        {"id": "vsw-b", "zone": "z", "cidr": "10.0.0.128/25"},
    ], nodes=[{"name": "n1", "vswitch": "vsw-a"}]))
    assert e.field == "vswitches[1].cidr"
    assert "overlaps vswitches[0].cidr" in str(e)


def test_node_in_unknown_vswitch_names_the_field() -> None:
    e = error(topo(nodes=[{"name": "n1", "vswitch": "vsw-nope"}]))
    assert e.field == "nodes[0].vswitch"
    assert "vsw-nope" in str(e)


def test_cidr_outside_the_vpc_names_the_field() -> None:
    e = error(topo(vswitches=[{"id": "vsw-a", "zone": "z", "cidr": "172.16.0.0/24"}],
                   nodes=[{"name": "n1", "vswitch": "vsw-a"}]))
    assert e.field == "vswitches[0].cidr"
    assert "outside the VPC CIDR 10.0.0.0/16" in str(e)


def test_bad_instance_type_names_the_field() -> None:
    e = error(topo(nodes=[{"name": "n1", "instance_type": "ecs.g7.huge", "vswitch": "vsw-a"}]))
    assert e.field == "nodes[0].instance_type"
    assert "ecs.g7.huge" in str(e)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (topo(nodes=[]), "nodes"),
        (topo(vpc={"cidr": "10.0.0.0/33"}), "vpc.cidr"),
        (topo(nodes=[{"name": "N_1", "vswitch": "vsw-a"}]), "nodes[0].name"),
        (topo(nodes=[{"name": "n1", "vswitch": "vsw-a", "color": "red"}]), "nodes[0]"),
        (topo(zones=["cn-hangzhou-i"]), "vswitches[1].zone"),
        (topo(vswitches=[{"id": "vsw-a", "zone": "z", "cidr": "10.0.0.0/30"}]),
         "vswitches[0].cidr"),
        (topo(nodes=[{"name": "n1", "vswitch": "vsw-a"}, {"name": "n1", "vswitch": "vsw-b"}]),
         "nodes[1].name"),
        (topo(nodes=[{"name": "n1", "vswitch": "vsw-a", "primary_ip": "10.0.0.253"}]),
         "nodes[0].primary_ip"),
    ],
)
def test_each_invalid_topology_names_its_field(data: dict[str, Any], field: str) -> None:
    assert error(data).field == field


def test_full_vswitch_says_so() -> None:
    nodes = [{"name": f"n{i}", "vswitch": "vsw-a"} for i in range(5)]
    e = error(topo(vswitches=[{"id": "vsw-a", "zone": "z", "cidr": "10.0.0.0/29"}], nodes=nodes))
    assert e.field == "nodes[4].primary_ip"
    assert "no free address" in str(e)


def test_default_topology_spans_two_zones_with_alibaba_addressing() -> None:
    t = default_topology(nodes=2)
    n1, n2 = t.nodes
    assert n1.zone != n2.zone
    assert n1.vswitch.id != n2.vswitch.id
    for node in t.nodes:
        assert node.vswitch.gateway == node.vswitch.cidr.broadcast_address - 2
        assert str(node.vswitch.gateway).endswith(".253")
        assert node.primary_ip in set(node.vswitch.usable())
        assert node.mac.startswith("00:16:3e:")
        assert node.instance_id.startswith("i-")
        assert node.primary_eni_id.startswith("eni-")


def test_explicit_primary_ip_is_kept_and_skipped_by_others() -> None:
    t = Topology.from_dict(topo(nodes=[
        {"name": "n1", "vswitch": "vsw-a"},
        {"name": "n2", "vswitch": "vsw-a", "primary_ip": "10.0.0.1"},
    ]))
    assert t.node("n2").primary_ip == ipaddress.IPv4Address("10.0.0.1")
    assert t.node("n1").primary_ip == ipaddress.IPv4Address("10.0.0.2")


def test_round_trip_through_the_file_form(tmp_path: Path) -> None:
    t = Topology.from_dict(topo())
    assert Topology.from_dict(t.to_dict()) == t
    f = tmp_path / "lab.yaml"
    f.write_text("vswitches:\n  - {id: vsw-x, zone: z1, cidr: 192.168.8.0/24}\n"
                 "nodes:\n  - {name: a, vswitch: vsw-x}\n")
    loaded = load_topology(f)
    assert loaded.region == "cn-hangzhou"
    assert loaded.node("a").vswitch.id == "vsw-x"


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("nodes: [\n")
    with pytest.raises(TopologyError) as info:
        load_topology(f)
    assert info.value.field == str(f)


def test_faults_section_is_carried_to_the_cloud() -> None:
    from podlab.fakecloud import Endpoint
    from podlab.fakecloud.models import Cloud

    rules = {"rules": [{"action": "AttachNetworkInterface", "latency": 0.5}]}
    t = Topology.from_dict(topo(faults=rules))
    assert Topology.from_dict(t.to_dict()).faults == rules
    endpoint = Endpoint(Cloud(t))
    endpoint.faults.set(t.faults)
    assert endpoint.faults.describe()["rules"][0]["latency"] == 0.5
    assert error(topo(faults={"rulez": []})).field == "faults"
