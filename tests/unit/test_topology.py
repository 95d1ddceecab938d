"""Topology validation: every error names the field a user has to fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from podlab.fakecloud import Topology, TopologyError, default_topology, load_topology, mock


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
    """Through the endpoint every cloud is served by (the mock, `fakecloud serve`, a lab's):
    the topology's rule fails the call it names, without anyone applying it by hand."""
    from tests.unit.fakecloud.test_faults import types

    rules = {"rules": [{"action": "DescribeInstanceTypes", "code": "InternalError"}]}
    t = Topology.from_dict(topo(faults=rules))
    assert Topology.from_dict(t.to_dict()).faults == rules
    with mock(t) as endpoint:
        assert types() == "InternalError"
        assert endpoint.faults.describe()["rules"][0]["code"] == "InternalError"
    with mock(Topology.from_dict(topo())):
        assert types() == "OK"
    assert error(topo(faults={"rulez": []})).field == "faults"


@pytest.mark.parametrize(("rule", "field"), [
    ({"latency": -1}, "faults.rules[0].latency"),
    ({"code": "X", "status": "abc"}, "faults.rules[0].status"),
    ({"code": "X", "window": [10]}, "faults.rules[0].window"),
])
def test_a_bad_fault_rule_is_refused_by_the_loader(rule: dict[str, Any], field: str) -> None:
    e = error(topo(faults={"rules": [rule]}))
    assert e.field == field
    assert str(e).startswith(f"{field}: ")


def test_seed_and_cloud_timing_are_part_of_the_world() -> None:
    t = Topology.from_dict(topo(seed=7, cloud={"attach_delay": 0.5, "metadata_lag": 1.0}))
    assert (t.seed, t.attach_delay, t.metadata_lag) == (7, 0.5, 1.0)
    assert Topology.from_dict(t.to_dict()) == t
    assert t.to_dict()["cloud"] == {"attach_delay": 0.5, "metadata_lag": 1.0}
    assert "seed" not in Topology.from_dict(topo()).to_dict(), "the default stays implicit"
    again = t.configured(seed=8, metadata_lag=0)
    assert (again.seed, again.attach_delay, again.metadata_lag) == (8, 0.5, 0.0)
    assert t.configured() == t
    assert error(topo(seed=-1)).field == "seed"
    assert error(topo(seed="7")).field == "seed"
    assert error(topo(cloud={"attach_delay": -1})).field == "cloud.attach_delay"
    assert error(topo(cloud={"metadata_lag": 601})).field == "cloud.metadata_lag"
    assert error(topo(cloud={"attach": 1})).field == "cloud"
    with pytest.raises(TopologyError) as info:
        t.configured(attach_delay=-1)
    assert info.value.field == "cloud.attach_delay"


def test_the_cloud_on_a_topology_takes_its_attach_delay() -> None:
    from tests.unit.fakecloud.test_sdk_lifecycle import Clock

    clock = Clock()
    with mock(Topology.from_dict(topo(cloud={"attach_delay": 0.5})), clock=clock) as endpoint:
        model = endpoint.cloud
        eni = model.create_eni("vsw-a", security_groups=["sg"])
        model.attach_eni(eni.id, model.topology.node("n1").instance_id)
        clock.now = 0.4
        assert model.eni(eni.id).status == "Attaching"
        clock.now = 0.5
        assert model.eni(eni.id).status == "InUse"


@pytest.mark.parametrize(("cidr", "what"), [
    ("127.0.0.0/16", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("100.100.0.0/16", "the cloud's own services"),
    ("100.64.0.0/10", "the cloud's own services"),
    ("224.0.0.0/16", "multicast"),
    ("0.0.0.0/8", "'this network'"),
    ("240.0.0.0/16", "reserved"),
])
def test_a_vpc_in_a_reserved_range_is_refused(cidr: str, what: str) -> None:
    network = ipaddress.IPv4Network(cidr)
    vswitch = next(network.subnets(new_prefix=max(network.prefixlen, 16) + 8))
    e = error(topo(vpc={"cidr": cidr},
                   vswitches=[{"id": "vsw-a", "zone": "z", "cidr": str(vswitch)}],
                   nodes=[{"name": "n1", "vswitch": "vsw-a"}]))
    assert e.field == "vpc.cidr"
    assert what in str(e)
    assert "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16" in str(e), "says what to do"


def _lab_refuses(cidr: str, **kwargs: Any) -> TopologyError:
    from podlab.lab.lab import Lab

    network = ipaddress.IPv4Network(cidr)
    t = Topology.from_dict(topo(vpc={"cidr": cidr}, vswitches=[
        {"id": "vsw-a", "zone": "z", "cidr": str(next(network.subnets(new_prefix=24)))}],
        nodes=[{"name": "n1", "vswitch": "vsw-a"}]))
    with pytest.raises(TopologyError) as info:
        Lab(t, "tvpc", **kwargs)
    return info.value


def test_a_lab_refuses_a_vpc_over_its_management_or_service_range() -> None:
    """Before anything is made: over 198.18.0.0/15 the VPC would take other labs' host
    links; over the Service CIDR, ClusterIPs."""
    e = _lab_refuses("198.18.0.0/16", agents=False)
    assert e.field == "vpc.cidr"
    assert "198.18.0.0/15, the labs' management network" in str(e)
    e = _lab_refuses("172.16.0.0/12")
    assert "172.21.0.0/20, the lab's Service CIDR" in str(e)
    from podlab.lab.lab import Lab

    t = Topology.from_dict(topo(vpc={"cidr": "172.21.0.0/16"}, vswitches=[
        {"id": "vsw-a", "zone": "z", "cidr": "172.21.64.0/24"}],
        nodes=[{"name": "n1", "vswitch": "vsw-a"}]))
    assert Lab(t, "tvpc", agents=False).topology == t, "no Services without a control plane"


# 356 bytes that name 9**9 values: `podlab up` took 1.5 GB and gave no answer in 120 s.
BOMB = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"{x}: &{x} [{','.join([f'*{p}'] * 9)}]" for p, x in zip("abcdefgh", "bcdefghi",
                                                              strict=True)),
    "vswitches: *i", "nodes: *i", ""])


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    assert len(BOMB) < 400
    with pytest.raises(TopologyError) as info:
        load_topology(f)
    assert info.value.field == str(f)
    assert "expands to more than 100000 values (YAML aliases" in str(info.value)


@pytest.mark.parametrize(("text", "says"), [
    ("# padding\n" * 120_000, "larger than 1048576 bytes"),
    ("vswitches: &v [*v]\nnodes: []\n", "nested deeper than 32 levels"),
    ("nodes: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
])
def test_a_file_too_big_or_too_deep_is_refused(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "lab.yaml"
    f.write_text(text)
    with pytest.raises(TopologyError) as info:
        load_topology(f)
    assert says in str(info.value)


def test_the_internet_zone_is_canonical_and_round_trips(tmp_path: Path) -> None:
    assert default_topology().internet["aliyun.com"][0] == "A 106.11.248.144"
    path = tmp_path / "t.yaml"
    path.write_text("vswitches: [{id: vsw-a, zone: z, cidr: 192.168.0.0/24}]\n"
                    "nodes: [{name: n1, vswitch: vsw-a}]\n"
                    "internet:\n  Foo.Example.: [a 198.51.100.7, AAAA 2001:db8:0::1, "
                    "TXT \"v=spf1 -all\"]\n  www.example: [CNAME foo.example.]\n")
    t = load_topology(path)
    assert t.internet == {"foo.example": ("A 198.51.100.7", "AAAA 2001:db8::1",
                                          "TXT v=spf1 -all"),
                          "www.example": ("CNAME foo.example",)}
    assert Topology.from_dict(t.to_dict()) == t
    assert "internet" not in default_topology().to_dict(), "the default zone is implied"


@pytest.mark.parametrize(("zone", "field"), [
    ({"a..b": ["A 192.0.2.1"]}, "internet.a..b"),
    ({"a.b": ["A 192.0.2"]}, "internet.a.b[0]"),
    ({"a.b": ["AAAA 192.0.2.1"]}, "internet.a.b[0]"),
    ({"a.b": ["MX 10 mx.a.b"]}, "internet.a.b[0]"),
    ({"a.b": ["CNAME c.d", "A 192.0.2.1"]}, "internet.a.b"),
    ({"a.b": []}, "internet.a.b"),
    ({"a.b": ["A 192.0.2.1"] * 33}, "internet.a.b"),
])
def test_a_bad_internet_record_names_its_field(zone: dict[str, Any], field: str) -> None:
    data = {**default_topology().to_dict(), "internet": zone}
    with pytest.raises(TopologyError) as e:
        Topology.from_dict(data)
    assert e.value.field == field
