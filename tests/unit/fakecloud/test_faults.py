"""Fault rules fail, delay and throttle calls exactly as configured, and replay by seed."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

from podlab.fakecloud import Cloud, Endpoint, default_topology, mock
from podlab.fakecloud.faults import Faults, InjectedError, faults_from_dict
from podlab.fakecloud.server import cloud_server
from tests.unit.fakecloud.sdk import REGION, ecs
from tests.unit.fakecloud.test_sdk_lifecycle import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud(clock: Clock) -> Iterator[Endpoint]:
    with mock(clock=clock) as endpoint:
        yield endpoint


def types() -> str:
    try:
        ecs().describe_instance_types(m.DescribeInstanceTypesRequest())
    except AlibabaCloudException as e:
        return str(e.code)
    return "OK"


def test_every_nth_call_fails(cloud: Endpoint) -> None:
    cloud.faults.set({"rules": [{"action": "DescribeInstanceTypes", "code": "InternalError",
                                 "every": 3}]})
    assert [types() for _ in range(6)] == ["OK", "OK", "InternalError"] * 2


def test_window_and_target(cloud: Endpoint, clock: Clock) -> None:
    eni = cloud.cloud.create_eni("vsw-a", security_groups=["sg"]).id
    cloud.faults.set({"rules": [{"action": "*", "code": "Operation.Conflict", "status": 409,
                                 "window": [10, 20], "target": eni}]})

    def assign() -> str:
        try:
            ecs().assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
                region_id=REGION, network_interface_id=eni,
                secondary_private_ip_address_count=1))
        except AlibabaCloudException as e:
            return str(e.code)
        return "OK"

    assert (assign(), types()) == ("OK", "OK")
    clock.now = 15
    assert (assign(), types()) == ("Operation.Conflict", "OK")
    clock.now = 20
    assert assign() == "OK"


def test_probability_replays_with_the_seed() -> None:
    def run(seed: int) -> list[bool]:
        faults = Faults(seed=seed)
        faults.set({"rules": [{"code": "InternalError", "probability": 0.5}]})
        out = []
        for _ in range(40):
            try:
                faults.check("X", {})
                out.append(True)
            except Exception:
                out.append(False)
        return out

    assert run(7) == run(7)
    assert 5 < run(7).count(False) < 35


def test_latency_is_added_through_the_injected_sleep() -> None:
    slept: list[float] = []
    faults = Faults(sleep=slept.append)
    faults.set({"rules": [{"action": "AttachNetworkInterface", "latency": 1.5}]})
    faults.check("AttachNetworkInterface", {})
    faults.check("DescribeNetworkInterfaces", {})
    assert slept == [1.5]


def test_throttling_is_a_token_bucket_with_retry_after(clock: Clock) -> None:
    endpoint = Endpoint(Cloud(default_topology(), clock=clock))
    endpoint.faults.set({"throttles": [{"action": "DescribeInstanceTypes", "rate": 2,
                                        "burst": 2, "code": "Throttling.User"}]})
    server = cloud_server(endpoint, admin_token="t").start()
    try:
        host = server.url.removeprefix("http://")
        codes = []
        for _ in range(3):
            try:
                ecs(endpoint=host).describe_instance_types(m.DescribeInstanceTypesRequest())
                codes.append("OK")
            except AlibabaCloudException as e:
                codes.append(str(e.code))
        assert codes == ["OK", "OK", "Throttling.User"]
        reply = endpoint.calls[-1]
        assert reply.code == "Throttling.User"
        clock.now += 0.5  # one token back
        ecs(endpoint=host).describe_instance_types(m.DescribeInstanceTypesRequest())
        posted = urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/_podlab/faults", data=json.dumps({"rules": []}).encode(),
            method="POST", headers={"Authorization": "Bearer t"}))
        assert json.load(posted) == {"rules": [], "throttles": []}
    finally:
        server.stop()


def test_retry_after_header() -> None:
    faults = Faults(clock=lambda: 0.0)
    faults.set({"throttles": [{"action": "*", "rate": 4, "burst": 1}]})
    faults.check("A", {})
    with pytest.raises(InjectedError) as info:
        faults.check("A", {})
    assert info.value.headers == {"x-acs-retry-after": "250"}


def test_malformed_rules_are_refused() -> None:
    with pytest.raises(Exception, match="probability"):
        faults_from_dict({"rules": [{"code": "X", "probability": 2}]})
    with pytest.raises(Exception, match="malformed"):
        faults_from_dict({"rules": [{"colour": "red"}]})
