"""Alibaba's gateway checks, through the official SDK with both signatures: a replayed
SignatureNonce, a stale Timestamp and a ClientToken reused for another request are refused,
and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi.utils import Utils

from podlab.fakecloud import Endpoint, default_topology, mock
from tests.unit.fakecloud.sdk import REGION, ecs, rpc_query
from tests.unit.fakecloud.test_sdk_errors import code_of

SIGNATURES = [None, "v2"]  # ACS3-HMAC-SHA256 (headers), RPC v1 (query parameters)


@pytest.fixture
def cloud() -> Iterator[Endpoint]:
    with mock(default_topology(nodes=1)) as endpoint:
        yield endpoint


def describe(algorithm: str | None) -> object:
    return ecs(algorithm=algorithm).describe_instances(m.DescribeInstancesRequest(
        region_id=REGION))


def create(algorithm: str | None, token: str, vswitch: str = "vsw-a",
           count: int | None = None) -> str:
    return str(ecs(algorithm=algorithm).create_network_interface(
        m.CreateNetworkInterfaceRequest(region_id=REGION, v_switch_id=vswitch,
                                        security_group_id="sg-podlab", client_token=token,
                                        secondary_private_ip_address_count=count)
    ).body.network_interface_id)


def secondary_enis(cloud: Endpoint) -> list[str]:
    return [e.id for e in cloud.cloud.all_enis() if e.type == "Secondary"]


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_a_replayed_nonce_is_refused(cloud: Endpoint, algorithm: str | None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: "the-same-nonce"))
    create(algorithm, token="t1")
    assert code_of(lambda: create(algorithm, token="t2")) == ("SignatureNonceUsed", 400)
    assert len(secondary_enis(cloud)) == 1, "the replay made nothing"


@pytest.mark.parametrize("algorithm", SIGNATURES)
@pytest.mark.parametrize("timestamp", ["2001-09-09T01:46:40Z", "2099-01-01T00:00:00Z"])
def test_a_timestamp_outside_the_skew_is_refused(cloud: Endpoint, algorithm: str | None,
                                                 timestamp: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: timestamp))
    assert code_of(lambda: describe(algorithm)) == ("InvalidTimeStamp.Expired", 400)


def test_a_timestamp_within_the_skew_and_a_bad_one(cloud: Endpoint) -> None:
    now = cloud.freshness.wall()
    cloud.freshness.wall = lambda: now + 14 * 60  # the server's clock 14 minutes ahead
    describe(None)
    reply = cloud.handle("POST", "http://x/?" + rpc_query(
        "DescribeInstances", "2014-05-26", {"RegionId": REGION}, timestamp="yesterday"),
        {}, b"")
    assert (reply.status, json.loads(reply.body)["Code"]) == (400, "InvalidTimeStamp.Format")


def test_a_nonce_is_forgotten_after_the_window(cloud: Endpoint) -> None:
    query = rpc_query("DescribeInstances", "2014-05-26", {"RegionId": REGION}, nonce="n1")
    assert cloud.handle("POST", "http://x/?" + query, {}, b"").status == 200
    assert cloud.handle("POST", "http://x/?" + query, {}, b"").status == 400
    sent = dict(parse_qsl(query))["Timestamp"]
    assert sent.endswith("Z")
    start = cloud.freshness.wall()
    cloud.freshness.wall = lambda: start + cloud.freshness.window + 1
    reply = cloud.handle("POST", "http://x/?" + query, {}, b"")
    # By then the request's own Timestamp is stale too: a replay is refused either way.
    assert json.loads(reply.body)["Code"] == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_a_client_token_with_other_parameters_is_a_mismatch(cloud: Endpoint,
                                                            algorithm: str | None) -> None:
    first = create(algorithm, token="once", count=1)
    assert create(algorithm, token="once", count=1) == first, "a retry gets the first answer"
    assert code_of(lambda: create(algorithm, token="once", count=2)) == (
        "IdempotentParameterMismatch", 400)
    assert secondary_enis(cloud) == [first]
    eni = cloud.cloud.eni(first)
    ecs(algorithm=algorithm).assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=first, secondary_private_ip_address_count=1,
        client_token="a1"))
    assert code_of(lambda: ecs(algorithm=algorithm).assign_private_ip_addresses(
        m.AssignPrivateIpAddressesRequest(region_id=REGION, network_interface_id=first,
                                          secondary_private_ip_address_count=2,
                                          client_token="a1"))) == (
        "IdempotentParameterMismatch", 400)
    assert len(eni.ips) == 3, "primary, the one created with it, the one assigned"
