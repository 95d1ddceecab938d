"""Random actions and parameters, correctly signed, against the endpoint: every answer is
a 200 or an Alibaba-shaped 4xx, never a 5xx or a traceback."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from podlab.fakecloud import Cloud, Endpoint, default_topology
from podlab.fakecloud.responses import ACTIONS
from tests.unit.fakecloud.sdk import rpc_query

TOPOLOGY = default_topology()
NAMES = ["NetworkInterfaceId", "InstanceId", "VSwitchId", "SecurityGroupId", "ClientToken",
         "SecondaryPrivateIpAddressCount", "PrivateIpAddress.1", "PrivateIpAddress.2",
         "PageNumber", "PageSize", "NextToken", "MaxResults", "Tag.1.Key", "Tag.1.Value",
         "InstanceIds", "InstanceTypes.1", "Ipv6AddressCount", "Ipv6Address.1", "Status",
         "Type", "PrimaryIpAddress", "ZoneId", "NetworkInterfaceId.1"]
VALUES = st.one_of(
    st.sampled_from(["vsw-a", "vsw-b", "eni-x", "0", "-1", "5", "11", "99999999999", "[]",
                     '["x"]', "[1]", "192.168.0.5", "10.0.0.1", "fd00::1", "InUse", "", "{",
                     TOPOLOGY.nodes[0].instance_id, TOPOLOGY.nodes[0].primary_eni_id]),
    st.text(max_size=12),
)
ACTION_NAMES = sorted({a for _, a in ACTIONS} | {"RunInstances", "", "describeVpcs"})


def signed(action: str, version: str, params: dict[str, str]) -> str:
    return "http://ecs.podlab.local/?" + rpc_query(action, version, params)


@settings(max_examples=300, deadline=None)
@given(action=st.sampled_from(ACTION_NAMES),
       version=st.sampled_from(["2014-05-26", "2016-04-28", "1999-01-01"]),
       params=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6))
def test_no_input_makes_a_5xx(action: str, version: str, params: dict[str, str]) -> None:
    endpoint = Endpoint(Cloud(TOPOLOGY))
    reply = endpoint.handle("POST", signed(action, version, params), {}, b"")
    body = json.loads(reply.body)
    assert reply.status < 500, body
    assert body["RequestId"]
    if reply.status != 200:
        assert 400 <= reply.status < 500
        assert {"HostId", "Code", "Message", "Recommend"} <= set(body)


@settings(max_examples=100, deadline=None)
@given(url=st.text(max_size=40), body=st.binary(max_size=40),
       headers=st.dictionaries(st.sampled_from(["authorization", "content-type",
                                                "x-acs-action", "x-acs-content-sha256"]),
                               st.text(max_size=20), max_size=3))
def test_garbage_requests_are_refused_in_alibabas_shape(url: str, body: bytes,
                                                        headers: dict[str, str]) -> None:
    reply = Endpoint(Cloud(TOPOLOGY)).handle("POST", "http://x/?" + url, headers, body)
    assert 400 <= reply.status < 500
    assert "Code" in json.loads(reply.body)
