"""The official SDKs drive every ENI action against the in-process fake cloud."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_vpc20160428 import models as vpc_models

from podlab.fakecloud import SECURITY_GROUP_ID, Cloud, Endpoint, default_topology, mock
from podlab.fakecloud.server import cloud_server
from tests.unit.fakecloud.sdk import ENDPOINT, REGION, ecs, vpc


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["mock", "http"])
def cloud(request: pytest.FixtureRequest, clock: Clock,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """The same fake cloud behind either transport: `responses` or a real HTTP server."""
    if request.param == "mock":
        with mock(default_topology(nodes=2), attach_delay=1.0, clock=clock) as endpoint:
            yield endpoint
        return
    endpoint = Endpoint(Cloud(default_topology(nodes=2), attach_delay=1.0, clock=clock))
    server = cloud_server(endpoint).start()
    monkeypatch.setitem(ENDPOINT, "default", server.url.removeprefix("http://"))
    try:
        yield endpoint
    finally:
        server.stop()


def n1(cloud: Endpoint) -> str:
    return cloud.cloud.topology.node("n1").instance_id


def create(count: int = 0, vswitch: str = "vsw-a", token: str | None = None) -> str:
    body = ecs().create_network_interface(ecs_models.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=vswitch, security_group_id="sg-podlab",
        secondary_private_ip_address_count=count or None, client_token=token)).body
    return str(body.network_interface_id)


def describe(**filters: object) -> list[ecs_models.DescribeNetworkInterfacesResponseBodyNetworkInterfaceSetsNetworkInterfaceSet]:  # noqa: E501
    body = ecs().describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION, **filters)).body
    return list(body.network_interface_sets.network_interface_set)


def available(vswitch: str) -> int:
    body = vpc().describe_vswitches(vpc_models.DescribeVSwitchesRequest(
        region_id=REGION, v_switch_id=vswitch)).body
    return int(body.v_switches.v_switch[0].available_ip_address_count)


def test_eni_life_cycle_is_eventually_consistent(cloud: Endpoint, clock: Clock) -> None:
    free = available("vsw-a")
    eni = create(count=2)
    assert available("vsw-a") == free - 3
    ecs().attach_network_interface(ecs_models.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni, instance_id=n1(cloud)))
    assert describe(network_interface_id=[eni])[0].status == "Attaching"
    clock.now += 1.0
    (seen,) = describe(network_interface_id=[eni])
    assert (seen.status, seen.instance_id) == ("InUse", n1(cloud))

    assigned = ecs().assign_private_ip_addresses(ecs_models.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni, secondary_private_ip_address_count=2)).body
    ips = assigned.assigned_private_ip_addresses_set.private_ip_set.private_ip_address
    assert len(ips) == 2
    assert available("vsw-a") == free - 5
    ecs().unassign_private_ip_addresses(ecs_models.UnassignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni, private_ip_address=ips))
    assert available("vsw-a") == free - 3

    ecs().detach_network_interface(ecs_models.DetachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni, instance_id=n1(cloud)))
    assert describe(network_interface_id=[eni])[0].status == "Detaching"
    clock.now += 1.0
    assert describe(network_interface_id=[eni])[0].status == "Available"
    ecs().delete_network_interface(ecs_models.DeleteNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni))
    assert describe(network_interface_id=[eni]) == []
    assert available("vsw-a") == free


def test_client_token_makes_create_and_assign_idempotent(cloud: Endpoint) -> None:
    first, again = create(token="t-1"), create(token="t-1")
    assert first == again
    assert len(describe(type="Secondary")) == 1
    request = ecs_models.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=first, secondary_private_ip_address_count=1,
        client_token="t-2")
    a = ecs().assign_private_ip_addresses(request).body
    b = ecs().assign_private_ip_addresses(request).body
    assert (a.assigned_private_ip_addresses_set.private_ip_set.private_ip_address
            == b.assigned_private_ip_addresses_set.private_ip_set.private_ip_address)
    assert len(describe(network_interface_id=[first])[0].private_ip_sets.private_ip_set) == 2


def test_describe_filters_and_both_paging_styles(cloud: Endpoint) -> None:
    made = [create() for _ in range(5)]
    assert {e.network_interface_id for e in describe(v_switch_id="vsw-a", type="Secondary")} \
        == set(made)
    page = ecs().describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION, page_number=2, page_size=3)).body
    assert (page.total_count, len(page.network_interface_sets.network_interface_set)) == (7, 3)
    seen, token = [], None
    while True:
        body = ecs().describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
            region_id=REGION, max_results=2, next_token=token)).body
        seen += [e.network_interface_id for e in body.network_interface_sets.network_interface_set]
        token = body.next_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 7


def test_instances_types_and_vpcs(cloud: Endpoint) -> None:
    ids = json.dumps([n1(cloud)])
    inst = ecs().describe_instances(ecs_models.DescribeInstancesRequest(
        region_id=REGION, instance_ids=ids)).body.instances.instance
    assert [(i.instance_name, i.status, i.instance_type) for i in inst] == [
        ("n1", "Running", "ecs.g7.large")]
    (n,) = inst
    assert n.security_group_ids.security_group_id == [SECURITY_GROUP_ID]
    assert (n.instance_type_family, n.cpu, n.memory, n.host_name) == ("ecs.g7", 2, 8192, "n1")
    assert n.vpc_attributes.private_ip_address.ip_address == [
        n.network_interfaces.network_interface[0].primary_ip_address]
    (primary,) = n.network_interfaces.network_interface
    assert [(s.private_ip_address, s.primary) for s in primary.private_ip_sets.private_ip_set] \
        == [(primary.primary_ip_address, True)]
    types = ecs().describe_instance_types(ecs_models.DescribeInstanceTypesRequest(
        instance_types=["ecs.g7.large"])).body.instance_types.instance_type
    assert [(t.eni_quantity, t.eni_private_ip_address_quantity) for t in types] == [(3, 6)]
    vpcs = vpc().describe_vpcs(vpc_models.DescribeVpcsRequest(region_id=REGION)).body
    assert vpcs.vpcs.vpc[0].cidr_block == "192.168.0.0/16"


def test_v1_signature_and_the_old_sdk(cloud: Endpoint) -> None:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkecs.request.v20140526.DescribeNetworkInterfacesRequest import (
        DescribeNetworkInterfacesRequest,
    )

    v1 = ecs(algorithm="v2").describe_network_interfaces(
        ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION)).body
    assert v1.total_count == 2
    client = AcsClient("podlab", "podlab-secret", REGION)
    client.add_endpoint(REGION, "Ecs", ENDPOINT["default"])
    request = DescribeNetworkInterfacesRequest()
    request.set_protocol_type("http")
    assert json.loads(client.do_action_with_exception(request))["TotalCount"] == 2
    assert [c.action for c in cloud.calls] == ["DescribeNetworkInterfaces"] * 2


def test_ipv6_addresses_come_from_the_vswitch_prefix(cloud: Endpoint, clock: Clock) -> None:
    eni = create()
    ecs().attach_network_interface(ecs_models.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni, instance_id=n1(cloud)))
    clock.now += 1.0
    body = ecs().assign_ipv_6addresses(ecs_models.AssignIpv6AddressesRequest(
        region_id=REGION, network_interface_id=eni, ipv_6address_count=2)).body
    v6 = body.ipv_6sets.ipv_6address
    prefix = vpc().describe_vswitches(vpc_models.DescribeVSwitchesRequest(
        region_id=REGION, v_switch_id="vsw-a")).body.v_switches.v_switch[0].ipv_6cidr_block
    assert len(set(v6)) == 2
    assert all(ipaddress.IPv6Address(a) in ipaddress.IPv6Network(prefix) for a in v6)
    (seen,) = describe(network_interface_id=[eni])
    assert sorted(s.ipv_6address for s in seen.ipv_6sets.ipv_6set) == sorted(v6)
    ecs().unassign_ipv_6addresses(ecs_models.UnassignIpv6AddressesRequest(
        region_id=REGION, network_interface_id=eni, ipv_6address=v6[:1]))
    (seen,) = describe(network_interface_id=[eni])
    assert [s.ipv_6address for s in seen.ipv_6sets.ipv_6set] == v6[1:]
