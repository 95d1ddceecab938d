"""Fault rules fail, delay and throttle calls exactly as configured, and replay by seed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

from podlab.fakecloud import Cloud, Endpoint, Topology, default_topology, mock
from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.faults import Faults, FaultSettingError, InjectedError, faults_from_dict
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


def types(client: Client | None = None) -> str:
    try:
        (client or ecs()).describe_instance_types(m.DescribeInstanceTypesRequest())
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


COIN = {"action": "DescribeInstanceTypes", "code": "InternalError", "probability": 0.5}


def admin(server: BackgroundServer, method: str, body: object = None) -> tuple[int, Any]:
    """The admin faults endpoint, as a test or a person calls it: status and JSON."""
    request = urllib.request.Request(
        f"{server.url}/_podlab/faults", method=method, headers={"Authorization": "Bearer t"},
        data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    server = cloud_server(Endpoint(Cloud(default_topology())), admin_token="t").start()
    try:
        yield server
    finally:
        server.stop()


def test_probability_replays_with_the_seed(
        server: BackgroundServer) -> None:
    """Over the endpoint, as a lab's tests set faults: seed 7 twice fails the same calls,
    seed 8 others; a POST without a seed keeps the one in force and replays it."""
    host = server.url.removeprefix("http://")

    def draws(settings: dict[str, Any]) -> list[str]:
        assert admin(server, "POST", settings)[0] == 200
        return [types(ecs(endpoint=host)) for _ in range(40)]

    seven = draws({"seed": 7, "rules": [COIN]})
    assert 5 < seven.count("InternalError") < 35
    assert draws({"seed": 7, "rules": [COIN]}) == seven
    assert draws({"seed": 8, "rules": [COIN]}) != seven
    assert admin(server, "GET")[1]["seed"] == 8
    assert draws({"seed": 7, "rules": [COIN]}) == seven
    assert draws({"rules": [COIN]}) == seven, "a POST without a seed keeps seed 7"


def test_the_topology_seed_draws_as_the_posted_one(server: BackgroundServer) -> None:
    """A topology's `seed:` and `faults:` reach the endpoint built on it (every endpoint:
    the mock, `fakecloud serve`, a lab's), and draw what the same seed posted draws."""
    host = server.url.removeprefix("http://")
    assert admin(server, "POST", {"seed": 7, "rules": [COIN]})[0] == 200
    posted = [types(ecs(endpoint=host)) for _ in range(40)]
    world = Topology.from_dict({**default_topology().to_dict(), "seed": 7,
                                "faults": {"rules": [COIN]}})
    with mock(world):
        assert [types() for _ in range(40)] == posted
    with mock(world.configured(seed=8)):
        assert [types() for _ in range(40)] != posted


@pytest.mark.parametrize(("settings", "field"), [
    ({"rules": [{"latency": -1}]}, "rules[0].latency"),
    ({"rules": [{"latency": 10**9}]}, "rules[0].latency"),
    ({"rules": [{"code": "X", "status": "abc"}]}, "rules[0].status"),
    ({"rules": [{"code": "X", "status": 200}]}, "rules[0].status"),
    ({"rules": [{"code": "X", "window": [10]}]}, "rules[0].window"),
    ({"rules": [{"code": "X", "window": [20, 10]}]}, "rules[0].window"),
    ({"rules": [{"code": "X", "window": [-1, 10]}]}, "rules[0].window[0]"),
    ({"rules": [{"code": "X", "probability": 2}]}, "rules[0].probability"),
    ({"rules": [{"code": "X", "probability": True}]}, "rules[0].probability"),
    ({"rules": [{"code": "X", "every": 0}]}, "rules[0].every"),
    ({"rules": [{"code": "X", "every": 1.5}]}, "rules[0].every"),
    ({"rules": [{"code": ""}]}, "rules[0].code"),
    ({"rules": [{"action": 5}]}, "rules[0].action"),
    ({"rules": [{"code": "X", "target": ["eni-1"]}]}, "rules[0].target"),
    ({"rules": [{"code": "X"}, {"colour": "red"}]}, "rules[1].colour"),
    ({"rules": ["InternalError"]}, "rules[0]"),
    ({"rules": {"code": "X"}}, "rules"),
    ({"rules": [{"code": "X"}] * 257}, "rules"),
    ({"throttles": [{"action": "*", "rate": 0, "burst": 1}]}, "throttles[0].rate"),
    ({"throttles": [{"action": "*", "rate": 1, "burst": 0}]}, "throttles[0].burst"),
    ({"throttles": [{"action": "*", "rate": 1}]}, "throttles[0].burst"),
    ({"seed": -1}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"rulez": []}, "rulez"),
])
def test_every_field_of_a_rule_is_checked(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(FaultSettingError) as info:
        faults_from_dict(settings)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_a_refused_rule_changes_nothing_and_the_cloud_answers(
        server: BackgroundServer) -> None:
    """The rules of the issue: each refused with 400 naming its field, the rules in force
    kept, and the cloud still answering (an accepted one failed every call with a 500)."""
    host = server.url.removeprefix("http://")
    kept = {"rules": [{"action": "AttachNetworkInterface", "latency": 0.5}]}
    assert admin(server, "POST", kept)[0] == 200
    for rule, field in (({"latency": -1}, "rules[0].latency"),
                        ({"code": "X", "status": "abc"}, "rules[0].status"),
                        ({"code": "X", "window": [10]}, "rules[0].window")):
        code, answer = admin(server, "POST", {"rules": [rule]})
        assert (code, answer.get("field")) == (400, field), answer
        assert answer["error"].startswith(f"{field}: ")
        assert types(ecs(endpoint=host)) == "OK"
    assert admin(server, "GET")[1]["rules"][0]["latency"] == 0.5


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
        assert json.load(posted) == {"seed": 0, "rules": [], "throttles": []}
    finally:
        server.stop()


def test_retry_after_header() -> None:
    faults = Faults(clock=lambda: 0.0)
    faults.set({"throttles": [{"action": "*", "rate": 4, "burst": 1}]})
    faults.check("A", {})
    with pytest.raises(InjectedError) as info:
        faults.check("A", {})
    assert info.value.headers == {"x-acs-retry-after": "250"}
