"""The cloud's control plane drives the lab's data plane: an attached ENI's device appears
in its node with its MAC, and an assigned IP arrives only while it is assigned."""

from __future__ import annotations

import json

import pytest
from alibabacloud_ecs20140526 import models as m

from podlab.lab import Lab
from tests.e2e.helpers import ip_json, ping
from tests.unit.fakecloud.sdk import REGION, ecs


@pytest.fixture
def lab(lab_factory) -> Lab:  # type: ignore[no-untyped-def]
    """The fabric and the cloud alone: no node agents attaching ENIs of their own."""
    lab: Lab = lab_factory(agents=False)
    return lab


def test_sdk_calls_move_devices_and_routes(lab: Lab) -> None:
    client = ecs(endpoint=lab.state.cloud_endpoint_host)
    n1 = lab.state.node("n1")
    eni = client.create_network_interface(m.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=n1.vswitch, security_group_id="sg")).body
    client.attach_network_interface(m.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        instance_id=n1.instance_id))
    links = {link["address"]: link["ifname"] for link in ip_json(lab, "n1", "link", "show")}
    device = links[eni.mac_address]
    assert device == "eth1"

    ip = client.assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        secondary_private_ip_address_count=1)
    ).body.assigned_private_ip_addresses_set.private_ip_set.private_ip_address[0]
    lab.exec("n1", ["ip", "link", "set", device, "up"])
    lab.exec("n1", ["ip", "addr", "add", f"{ip}/32", "dev", device])
    assert ping(lab, "n2", ip)

    client.unassign_private_ip_addresses(m.UnassignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        private_ip_address=[ip]))
    assert not ping(lab, "n2", ip)
    client.detach_network_interface(m.DetachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id))
    assert device not in {link["ifname"] for link in ip_json(lab, "n1", "link", "show")}
    assert [e["event"] for e in lab.events.read()][-4:] == [
        "fabric.route", "fabric.unroute", "fabric.unroute", "fabric.unplug_eni"]


def test_nodes_reach_the_endpoint_inside_the_vpc(lab: Lab) -> None:
    url = f"http://{lab.state.cloud_endpoint}/_podlab/state"
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    state = json.loads(lab.exec("n2", ["python3", "-c", script]).stdout)
    assert {e["NetworkInterfaceId"] for e in state["enis"]} == {
        n.primary_eni_id for n in lab.topology.nodes}


METADATA_CLIENT = """
import urllib.request
base = "http://100.100.100.200/latest"
token = urllib.request.urlopen(urllib.request.Request(
    base + "/api/token", method="PUT",
    headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})).read().decode()
for path in ("instance-id", "zone-id", "mac"):
    print(urllib.request.urlopen(urllib.request.Request(
        base + "/meta-data/" + path,
        headers={"X-aliyun-ecs-metadata-token": token})).read().decode())
"""


def test_each_node_sees_its_own_metadata(lab: Lab) -> None:
    for node in lab.state.nodes:
        answers = lab.exec(node.name, ["python3", "-c", METADATA_CLIENT]).stdout.split()
        assert answers == [node.instance_id, node.zone, node.mac]
