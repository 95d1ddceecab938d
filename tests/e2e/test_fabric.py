"""The VPC fabric: nodes reach each other through the router, and only routed IPs arrive."""

from __future__ import annotations

import json
import subprocess

import pytest

from podlab.fakecloud import default_topology
from podlab.lab import Lab, netns
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import host_netns, ip_json, ping


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    """The fabric and the cloud alone: no node agents attaching ENIs of their own."""
    lab: Lab = lab_factory(agents=False)
    return lab


def test_nodes_ping_across_vswitches(lab: Lab) -> None:
    n1, n2 = lab.state.nodes
    assert n1.vswitch != n2.vswitch
    assert ping(lab, "n1", n2.primary_ip)
    assert ping(lab, "n2", n1.primary_ip)


def test_nodes_in_one_vswitch_reach_each_other_through_the_router(lab_factory: LabFactory) -> None:
    lab = lab_factory(default_topology(nodes=3))
    n1, _, n3 = lab.state.nodes
    assert n1.vswitch == n3.vswitch
    assert ping(lab, "n1", n3.primary_ip)
    (neigh,) = ip_json(lab, "n1", "neigh", "show", n3.primary_ip)
    # Proxy ARP: the router's port answers for the vSwitch neighbour, as Alibaba's vSwitch does.
    ports = json.loads(netns.run(lab.state.fabric_netns, ["ip", "-j", "link"]).stdout)
    n1_eni = lab.topology.node("n1").primary_eni_id
    assert neigh["lladdr"] == next(p["address"] for p in ports if p.get("ifalias") == n1_eni)
    assert neigh["lladdr"] != n3.mac


def test_node_is_an_ecs_instance_with_its_primary_eni(lab: Lab) -> None:
    for node in lab.state.nodes:
        (eth0,) = ip_json(lab, node.name, "addr", "show", "eth0")
        assert eth0["address"] == node.mac
        assert node.mac.startswith("00:16:3e:")
        addrs = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]
        assert addrs == [(node.primary_ip, 24)]
        (default,) = ip_json(lab, node.name, "route", "show", "default")
        assert default["gateway"] == node.gateway
        assert node.gateway.endswith(".253")


def test_an_ip_arrives_only_while_the_fabric_routes_it(lab: Lab) -> None:
    n1, _n2 = lab.state.nodes
    extra = "192.168.0.77"
    lab.exec("n1", ["ip", "addr", "add", f"{extra}/24", "dev", "eth0"])
    assert not ping(lab, "n2", extra)
    lab.fabric.route_ip(extra, lab.topology.node("n1").primary_eni_id)
    assert ping(lab, "n2", extra)
    lab.fabric.unroute_ip(extra)
    assert not ping(lab, "n2", extra)
    assert ping(lab, "n2", n1.primary_ip)


def test_plugging_an_eni_makes_its_device_appear_with_its_mac(lab: Lab) -> None:
    mac = "00:16:3e:aa:bb:cc"
    device = lab.fabric.plug_eni(lab.state.node("n1").netns, "eni-test1", mac)
    assert device == "eth1"
    (link,) = ip_json(lab, "n1", "link", "show", device)
    assert link["address"] == mac
    lab.fabric.unplug_eni("eni-test1")
    assert "eth1" not in {link["ifname"] for link in ip_json(lab, "n1", "link", "show")}


def test_host_reaches_the_fabric_over_the_management_link(lab: Lab) -> None:
    assert lab.state.mgmt is not None
    proc = subprocess.run(["ping", "-c", "1", "-W", "1", lab.state.mgmt.fabric_ip],
                          capture_output=True, check=False)
    assert proc.returncode == 0


def test_pod_netns_is_a_named_netns_on_its_node(lab: Lab) -> None:
    pod = lab.add_pod("default", "web-0", "n1")
    assert pod.netns in host_netns()
    (lo,) = ip_json(lab, "default/web-0", "link", "show", "lo")
    assert "UP" in lo["flags"]
    lab.delete_pod("default", "web-0")
    assert pod.netns not in host_netns()


def test_every_fabric_change_is_in_the_event_log(lab: Lab) -> None:
    lab.fabric.plug_eni(lab.state.node("n2").netns, "eni-ev", "00:16:3e:00:00:01")
    lab.fabric.unplug_eni("eni-ev")
    events = lab.events.read()
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["lab.claim", "fabric.create", "fabric.mgmt"]
    assert kinds.count("fabric.route") == 2
    assert kinds[-2:] == ["fabric.plug_eni",
                                                               "fabric.unplug_eni"]
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)


def test_two_labs_with_identical_cidrs_do_not_interfere(lab_factory: LabFactory) -> None:
    a, b = lab_factory(), lab_factory()
    assert a.topology.to_dict() == b.topology.to_dict()
    assert a.state.mgmt != b.state.mgmt
    b.fabric.unroute_ip(b.state.node("n2").primary_ip)
    assert ping(a, "n1", a.state.node("n2").primary_ip)
    assert not ping(b, "n1", b.state.node("n2").primary_ip)
    b.down()
    assert ping(a, "n1", a.state.node("n2").primary_ip)


@pytest.mark.parametrize("nodes", [1, 4])
def test_lab_sizes(lab_factory: LabFactory, nodes: int) -> None:
    lab = lab_factory(default_topology(nodes=nodes))
    assert len(lab.state.nodes) == nodes
    last = lab.state.nodes[-1]
    assert ping(lab, "n1", last.primary_ip)
