"""The `fakecloud` fixture of the podlab pytest plugin: the SDK reaches it, calls are counted."""

from __future__ import annotations

from alibabacloud_ecs20140526 import models as m

from podlab.fakecloud import Endpoint
from tests.unit.fakecloud.sdk import REGION, ecs


def test_the_fixture_answers_the_sdk_and_counts_calls(fakecloud: Endpoint) -> None:
    body = ecs(endpoint="ecs.cn-hangzhou.aliyuncs.com").describe_network_interfaces(
        m.DescribeNetworkInterfacesRequest(region_id=REGION)).body
    assert body.total_count == len(fakecloud.cloud.topology.nodes)
    assert [c.action for c in fakecloud.calls] == ["DescribeNetworkInterfaces"]
