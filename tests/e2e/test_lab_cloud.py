"""The cloud's control plane drives the lab's data plane: an attached ENI's device appears
in its node with its MAC, and an assigned IP arrives only while it is assigned."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_ecs20140526 import models as m

from podlab.lab import Lab
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import cni, eventually, ip_json, ping, podlab
from tests.unit.fakecloud.sdk import REGION, ecs


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
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


PROBE = """
import json, sys, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen(urllib.request.Request(
        sys.argv[1], method=sys.argv[3], data=b"" if sys.argv[3] == "POST" else None,
        headers={"Authorization": "Bearer " + sys.argv[2]}), timeout=5)
    print(json.dumps([answer.status, json.load(answer)]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, json.loads(e.read() or b"null")]))
except OSError as e:
    print(json.dumps([0, str(e)]))
"""


def test_nodes_reach_the_openapi_but_no_admin_endpoint(lab: Lab) -> None:
    """Inside the VPC the endpoint is the OpenAPI, which refuses an unsigned request (the
    lab's admin token is not a signature); the admin endpoints answer only on the host's
    loopback, and a reset changes nothing."""
    assert lab.cloud is not None
    token = lab.cloud.admin_token
    eni = lab.cloud.model.create_eni(lab.state.node("n1").vswitch, security_groups=["sg"])
    for endpoint in (lab.state.cloud_endpoint, lab.state.cloud_endpoint_host):
        for verb, method in (("state", "GET"), ("reset", "POST")):
            code, body = json.loads(lab.exec("n2", ["python3", "-c", PROBE,
                                                    f"http://{endpoint}/_podlab/{verb}",
                                                    token, method]).stdout)
            assert code == 400, (endpoint, verb, body)
            assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    code, _ = json.loads(lab.exec("n2", ["python3", "-c", PROBE,
                                         f"{lab.state.cloud_admin}/_podlab/reset", token,
                                         "POST"]).stdout)
    assert code == 0, "the host's loopback is not the node's"
    assert eni.id in lab.cloud.model.enis, "nothing was reset"


def test_the_owner_reads_the_cloud_through_the_cli(lab: Lab) -> None:
    assert lab.state.cloud_admin_token_file.stat().st_mode & 0o777 == 0o600
    done = podlab("cloud", "state", "--name", lab.name)
    assert done.returncode == 0, done.stderr
    assert {e["NetworkInterfaceId"] for e in json.loads(done.stdout)["enis"]} == {
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


MACS = METADATA_CLIENT.partition("for path")[0] + """
print(urllib.request.urlopen(urllib.request.Request(
    base + "/meta-data/network/interfaces/macs/",
    headers={"X-aliyun-ecs-metadata-token": token})).read().decode())
"""
ATTACH, LAG = 2.0, 1.0


def test_a_lab_with_cloud_timing_lags_and_its_agents_cope(lab_factory: LabFactory) -> None:
    """A lab's seed and cloud timing reach its cloud: an attached ENI stays Attaching for
    `attach_delay` in DescribeNetworkInterfaces, and its node's metadata shows it
    `metadata_lag` later, as on Alibaba; the agents, which wait for both, still give a pod
    whose address needs a new ENI its address."""
    lab = lab_factory(control_plane=False, seed=7, attach_delay=ATTACH, metadata_lag=LAG,
                      agent_settings={"min_pool_size": 0, "max_pool_size": 2})
    assert lab.cloud is not None
    assert lab.cloud.endpoint.faults.describe()["seed"] == 7
    status = podlab("status", "--name", lab.name)
    assert f", seed 7, attach delay {ATTACH}s, metadata lag {LAG}s\n" in status.stdout

    lab.add_pod("default", "a", "n1")
    rc, result = cni(lab, "ADD", "default/a", "n1")
    assert rc == 0, result
    ip = result["ips"][0]["address"].split("/")[0]
    assert ip in {a for e in lab.cloud.model.all_enis() if e.type == "Secondary" for a in e.ips}
    assert ip in {a["local"] for link in ip_json(lab, "default/a", "addr", "show", "eth0")
                  for a in link["addr_info"]}

    def macs() -> set[str]:
        return set(lab.exec("n2", ["python3", "-c", MACS]).stdout.split())

    before = macs()  # the metadata serves from the views it took: one before the attach
    client = ecs(endpoint=lab.state.cloud_endpoint_host)

    n2 = lab.state.node("n2")
    eni = client.create_network_interface(m.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=n2.vswitch, security_group_id="sg")).body
    started = time.monotonic()
    client.attach_network_interface(m.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        instance_id=n2.instance_id))
    seen: list[str] = []

    def in_use() -> bool:
        seen.append(client.describe_network_interfaces(m.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni.network_interface_id])
        ).body.network_interface_sets.network_interface_set[0].status)
        return seen[-1] == "InUse"

    eventually(in_use, timeout=30, what="the attached ENI turns InUse")
    assert seen[0] == "Attaching"
    assert time.monotonic() - started >= ATTACH, f"InUse before the delay: {seen}"
    eventually(lambda: f"{eni.mac_address}/" in macs() - before, timeout=30,
               what="the node's metadata shows the ENI")
    assert time.monotonic() - started >= ATTACH + LAG, "metadata did not lag the API"
