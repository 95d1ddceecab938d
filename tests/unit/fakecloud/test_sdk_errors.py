"""Every error code the fake cloud answers, as the official SDK raises it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from podlab.fakecloud import Endpoint, Topology, mock
from tests.unit.fakecloud.sdk import REGION, ecs
from tests.unit.fakecloud.test_sdk_lifecycle import Clock, create

SMALL = Topology.from_dict({
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "192.168.0.0/24"},
                  {"id": "vsw-tiny", "zone": "z1", "cidr": "192.168.9.0/29"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"}],
})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud(clock: Clock) -> Iterator[Endpoint]:
    with mock(SMALL, attach_delay=1.0, clock=clock) as endpoint:
        yield endpoint


def code_of(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientException) as info:
        call()
    return info.value.code, info.value.status_code


def attach(eni: str, instance: str) -> Any:
    return ecs().attach_network_interface(m.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni, instance_id=instance))


def assign(eni: str, count: int) -> Any:
    return ecs().assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni, secondary_private_ip_address_count=count))


def n1(cloud: Endpoint) -> str:
    return cloud.cloud.topology.node("n1").instance_id


def test_eni_per_instance_limit(cloud: Endpoint, clock: Clock) -> None:
    for _ in range(2):  # ecs.g7.large: 3 ENIs, the primary included
        attach(create(), n1(cloud))
    assert code_of(lambda: attach(create(), n1(cloud))) == ("EniPerInstanceLimitExceeded", 403)


def test_ipv4_count_per_attached_eni(cloud: Endpoint, clock: Clock) -> None:
    eni = create(count=4)
    attach(eni, n1(cloud))
    clock.now += 1
    assert code_of(lambda: assign(eni, 2)) == ("InvalidOperation.Ipv4CountExceeded", 403)
    assign(eni, 1)  # 6 of 6


def test_private_ip_quota_of_an_unattached_eni(cloud: Endpoint) -> None:
    assert code_of(lambda: create(count=10)) == ("QuotaExceeded.PrivateIpAddress", 403)


def test_vswitch_exhaustion(cloud: Endpoint) -> None:
    create(count=3, vswitch="vsw-tiny")  # a /29 has 8 - 4 reserved = 4 usable
    assert code_of(lambda: create(vswitch="vsw-tiny")) == ("InvalidVSwitchId.IpNotEnough", 403)


def test_unknown_eni(cloud: Endpoint) -> None:
    assert code_of(lambda: assign("eni-nope", 1)) == ("InvalidEniId.NotFound", 404)


def test_invalid_eni_state(cloud: Endpoint, clock: Clock) -> None:
    eni = create()
    attach(eni, n1(cloud))
    clock.now += 1
    assert code_of(lambda: ecs().delete_network_interface(m.DeleteNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni))) == ("InvalidOperation.InvalidEniState", 403)


def test_unassigning_an_ip_the_eni_does_not_hold(cloud: Endpoint) -> None:
    eni = create()
    assert code_of(lambda: ecs().unassign_private_ip_addresses(
        m.UnassignPrivateIpAddressesRequest(region_id=REGION, network_interface_id=eni,
                                            private_ip_address=["192.168.0.200"]))
    ) == ("InvalidIp.IpUnassigned", 403)


def test_mutating_an_eni_mid_attach_conflicts(cloud: Endpoint) -> None:
    eni = create()
    attach(eni, n1(cloud))
    assert code_of(lambda: assign(eni, 1)) == ("Operation.Conflict", 409)


def test_wrong_secret_and_unknown_key(cloud: Endpoint) -> None:
    request = m.DescribeInstanceTypesRequest()
    code, status = code_of(lambda: ecs(secret="wrong").describe_instance_types(request))
    assert (code, status) == ("SignatureDoesNotMatch", 400)
    assert code_of(lambda: ecs(key="nobody").describe_instance_types(request)) == (
        "InvalidAccessKeyId.NotFound", 404)


def test_signature_mismatch_says_the_string_to_sign(cloud: Endpoint) -> None:
    with pytest.raises(ClientException) as info:
        ecs(secret="wrong", algorithm="v2").describe_instance_types(
            m.DescribeInstanceTypesRequest())
    assert "server string to sign is:POST&%2F&" in info.value.message


def test_missing_and_invalid_parameters_are_named(cloud: Endpoint) -> None:
    code, _ = code_of(lambda: ecs().create_network_interface(
        m.CreateNetworkInterfaceRequest(region_id=REGION, security_group_id="sg")))
    assert code == "MissingParameter"
    with pytest.raises(ClientException) as info:
        ecs().describe_network_interfaces(m.DescribeNetworkInterfacesRequest(
            region_id=REGION, page_size=1000))
    assert info.value.code == "InvalidParameter"
    assert '"PageSize"' in info.value.message


def test_unknown_action(cloud: Endpoint) -> None:
    from alibabacloud_tea_openapi.client import Client
    from alibabacloud_tea_openapi.models import OpenApiRequest, Params
    from darabonba.runtime import RuntimeOptions

    from tests.unit.fakecloud.sdk import config

    params = Params(action="LaunchRockets", version="2014-05-26", protocol="HTTP",
                    pathname="/", method="POST", auth_type="AK", style="RPC",
                    req_body_type="formData", body_type="json")
    with pytest.raises(ClientException) as info:
        Client(config()).call_api(params, OpenApiRequest(query={}), RuntimeOptions())
    assert (info.value.code, info.value.status_code) == ("InvalidAction.NotFound", 404)
