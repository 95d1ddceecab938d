"""CloudApi's retry loop and paging against the in-process fake cloud: the SDKs retry
nothing, so what is retried, what is not, how long it waits and when it gives up are ours
to get right. Time is a fake clock; nothing here really sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podlab.cni import cloudapi
from podlab.cni.cloudapi import CallHook, CloudApi, CloudCallError
from podlab.cni.identity import Credentials
from podlab.fakecloud.faults import FaultRule, Throttle
from podlab.fakecloud.mock import mock
from podlab.fakecloud.models import Eni
from podlab.fakecloud.wire import Endpoint
from tests.unit.agent.harness import Clock, node_of

TYPE = "ecs.g7.large"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud(clock: Clock) -> Iterator[Endpoint]:
    with mock(clock=clock) as endpoint:  # the fake cloud's throttles refill on our clock
        yield endpoint


def client(endpoint: Endpoint, clock: Clock, *, deadline: float = 30.0,
           on_call: CallHook | None = None) -> CloudApi:
    return CloudApi("ecs.podlab.local", endpoint.cloud.topology.region,
                    Credentials("podlab", "podlab-secret"), deadline=deadline,
                    on_call=on_call, sleep=clock.sleep, clock=clock, seed=0)


def calls(endpoint: Endpoint, action: str) -> list[str]:
    return [c.code for c in endpoint.calls if c.action == action]


def attached_eni(endpoint: Endpoint) -> Eni:
    node = node_of(endpoint)
    eni = endpoint.cloud.create_eni(node.vswitch.id, security_groups=["sg-1"])
    endpoint.cloud.attach_eni(eni.id, node.instance_id)
    return eni


def test_internal_error_is_retried_with_back_off(cloud: Endpoint, clock: Clock) -> None:
    cloud.faults.rules.append(FaultRule(action="DescribeInstanceTypes", code="InternalError",
                                        status=503, every=2))
    api = client(cloud, clock)
    assert api.quotas(TYPE).enis == 3  # 1st call: OK
    assert api.quotas(TYPE).enis == 3  # 2nd call fails, its retry (3rd) is OK
    assert calls(cloud, "DescribeInstanceTypes") == ["OK", "InternalError", "OK"]
    assert len(clock.slept) == 1
    assert 0.1 <= clock.slept[0] <= 0.3  # 0.2 s, jittered by 0.5..1.5


def test_quota_error_is_not_retried(cloud: Endpoint, clock: Clock) -> None:
    eni = cloud.cloud.create_eni("vsw-a", security_groups=["sg-1"])
    cloud.faults.rules.append(FaultRule(action="AttachNetworkInterface",
                                        code="EniPerInstanceLimitExceeded", status=403))
    with pytest.raises(CloudCallError) as caught:
        client(cloud, clock).attach(eni.id, node_of(cloud).instance_id)
    assert caught.value.code == "EniPerInstanceLimitExceeded"
    assert caught.value.quota
    assert not caught.value.retryable
    assert caught.value.status == 403
    assert calls(cloud, "AttachNetworkInterface") == ["EniPerInstanceLimitExceeded"]
    assert clock.slept == []


def test_vswitch_out_of_ips_is_exhausted(cloud: Endpoint, clock: Clock) -> None:
    cloud.faults.rules.append(FaultRule(action="CreateNetworkInterface",
                                        code="InvalidVSwitchId.IpNotEnough", status=400))
    with pytest.raises(CloudCallError) as caught:
        client(cloud, clock).create_eni("vsw-a", ["sg-1"], 3, {}, "tok-1")
    assert caught.value.exhausted
    assert not caught.value.quota
    assert len(calls(cloud, "CreateNetworkInterface")) == 1


def test_throttling_waits_for_retry_after(cloud: Endpoint, clock: Clock) -> None:
    cloud.faults.throttles.append(Throttle("DescribeInstanceTypes", rate=0.5, burst=1))
    api = client(cloud, clock)
    api.quotas(TYPE)
    api.quotas(TYPE)  # the bucket is empty: Throttling, retry-after 2000 ms
    assert calls(cloud, "DescribeInstanceTypes") == ["OK", "Throttling", "OK"]
    assert len(clock.slept) == 1
    assert clock.slept[0] >= 2.0  # more than the back-off alone (at most 0.3 s)


def test_retries_stop_at_the_deadline(cloud: Endpoint, clock: Clock) -> None:
    cloud.faults.rules.append(FaultRule(action="DescribeInstanceTypes", code="InternalError",
                                        status=503))
    started = clock.now
    with pytest.raises(CloudCallError) as caught:
        client(cloud, clock, deadline=2.0).quotas(TYPE)
    assert caught.value.code == "InternalError"
    assert caught.value.retryable
    assert len(calls(cloud, "DescribeInstanceTypes")) >= 2  # it did retry
    assert sum(clock.slept) <= 2.0
    assert clock.now - started <= 2.0


def test_assign_ips_with_the_same_token_assigns_once(cloud: Endpoint, clock: Clock) -> None:
    eni = attached_eni(cloud)
    api = client(cloud, clock)
    first = api.assign_ips(eni.id, 3, "tok-assign")
    again = api.assign_ips(eni.id, 3, "tok-assign")
    assert len(first) == 3
    assert again == first
    assert sorted(cloud.cloud.eni(eni.id).secondary_ips) == sorted(first)
    assert len(calls(cloud, "AssignPrivateIpAddresses")) == 2


def test_describe_enis_pages(cloud: Endpoint, clock: Clock,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudapi, "PAGE", 5)
    for _ in range(12):
        cloud.cloud.create_eni("vsw-a", security_groups=["sg-1"])
    found = client(cloud, clock).describe_enis()
    assert {e.id for e in found} == {e.id for e in cloud.cloud.all_enis()}
    assert len(found) == len(cloud.cloud.all_enis()) >= 12  # 12 + the nodes' primaries
    pages = [c.params.get("PageNumber") for c in cloud.calls
             if c.action == "DescribeNetworkInterfaces"]
    assert pages == ["1", "2", "3"]


def test_describe_enis_filters_by_tag(cloud: Endpoint, clock: Clock) -> None:
    mine = cloud.cloud.create_eni("vsw-a", security_groups=["sg-1"],
                                  tags={"creator": "podlab", "node": "n1"})
    cloud.cloud.create_eni("vsw-a", security_groups=["sg-1"], tags={"creator": "other"})
    cloud.cloud.create_eni("vsw-a", security_groups=["sg-1"])
    found = client(cloud, clock).describe_enis(tags={"creator": "podlab"})
    assert [e.id for e in found] == [mine.id]
    assert found[0].tags == {"creator": "podlab", "node": "n1"}


def test_quotas(cloud: Endpoint, clock: Clock) -> None:
    q = client(cloud, clock).quotas(TYPE)
    assert (q.enis, q.ipv4_per_eni) == (3, 6)


def test_on_call_sees_every_attempt(cloud: Endpoint, clock: Clock) -> None:
    seen: list[tuple[str, str, float]] = []
    api = client(cloud, clock, on_call=lambda a, r, s: seen.append((a, r, s)))
    cloud.faults.rules.append(FaultRule(action="DescribeInstanceTypes", code="InternalError",
                                        status=503, every=2))
    api.quotas(TYPE)
    api.quotas(TYPE)
    cloud.faults.rules.append(FaultRule(action="AttachNetworkInterface",
                                        code="EniPerInstanceLimitExceeded", status=403))
    with pytest.raises(CloudCallError):
        api.attach("eni-any", node_of(cloud).instance_id)
    assert [(a, r) for a, r, _ in seen] == [
        ("DescribeInstanceTypes", "OK"), ("DescribeInstanceTypes", "InternalError"),
        ("DescribeInstanceTypes", "OK"),
        ("AttachNetworkInterface", "EniPerInstanceLimitExceeded")]
    assert all(s >= 0 for _, _, s in seen)
