"""STS credentials and the RAM policy, through the official SDKs: a node's role credentials
work only with their own SecurityToken and only until they expire, only for the actions the
role's policy names; metadata hands them to the node, rotates them before they expire, and
refuses pods unless told otherwise; a key with a SourceIp condition works only from there."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_vpc20160428 import models as vpc_models
from alibabacloud_vpc20160428.client import Client as VpcClient
from Tea.exceptions import TeaException

from podlab.fakecloud import Cloud, default_topology
from podlab.fakecloud.metadata import MetadataService
from podlab.fakecloud.mock import mock
from podlab.fakecloud.ram import NODE_ROLE, Policy, Principal, Ram
from podlab.fakecloud.server import cloud_server
from podlab.fakecloud.wire import Endpoint
from tests.unit.fakecloud.sdk import REGION, ecs

ROLE_PATH = f"/latest/meta-data/ram/security-credentials/{NODE_ROLE}"


class Wall:
    """A wall clock the test moves (STS expiry is wall-clock time, as on Alibaba)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def cloud(wall: Wall) -> Iterator[Endpoint]:
    with mock() as endpoint:
        endpoint.ram.wall = wall
        endpoint.ram.sts_lifetime = 60.0
        yield endpoint


def sts_config(key: str, secret: str, token: str | None, algorithm: str | None) -> Config:
    return Config(access_key_id=key, access_key_secret=secret, security_token=token,
                  endpoint="ecs.podlab.local", region_id=REGION, protocol="http",
                  signature_algorithm=algorithm)


def describe(creds: Principal, token: str | None = None, algorithm: str | None = None,
             *, default_token: bool = True) -> Any:
    """DescribeNetworkInterfaces signed with `creds` and `token` (its own by default)."""
    token = token if token is not None or not default_token else creds.security_token
    client = EcsClient(sts_config(creds.access_key_id, creds.secret, token, algorithm))
    return client.describe_network_interfaces(
        ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION))


def code_of(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(TeaException) as caught:
        call()
    return str(caught.value.code), int(caught.value.statusCode)


# Both signatures carry the token: ACS3 in x-acs-security-token, RPC v1 as SecurityToken.
ALGORITHMS = pytest.mark.parametrize("algorithm", [None, "v2"])


@ALGORITHMS
def test_role_credentials_sign_and_the_call_log_names_them(cloud: Endpoint,
                                                           algorithm: str | None) -> None:
    creds = cloud.ram.assume_role(NODE_ROLE)
    assert creds.access_key_id.startswith("STS.")
    assert describe(creds, algorithm=algorithm).status_code == 200
    assert cloud.calls[-1].access_key_id == creds.access_key_id
    assert cloud.calls[-1].code == "OK"


@ALGORITHMS
def test_an_expired_token_is_refused(cloud: Endpoint, wall: Wall,
                                     algorithm: str | None) -> None:
    creds = cloud.ram.assume_role(NODE_ROLE)
    wall.now += 59
    assert describe(creds, algorithm=algorithm).status_code == 200
    wall.now += 1
    assert code_of(lambda: describe(creds, algorithm=algorithm)) == (
        "InvalidSecurityToken.Expired", 400)


@ALGORITHMS
def test_a_forged_or_borrowed_token_is_refused(cloud: Endpoint,
                                               algorithm: str | None) -> None:
    creds, other = cloud.ram.assume_role(NODE_ROLE), cloud.ram.assume_role(NODE_ROLE)
    mismatch = ("InvalidSecurityToken.MismatchWithAccessKey", 400)
    assert code_of(lambda: describe(creds, "forged-token", algorithm)) == mismatch
    assert code_of(lambda: describe(creds, other.security_token, algorithm)) == mismatch
    assert code_of(lambda: describe(creds, algorithm=algorithm, default_token=False)) == (
        "InvalidSecurityToken.Malformed", 400)
    long_lived = Principal("podlab", "podlab-secret", Policy())
    assert code_of(lambda: describe(long_lived, creds.security_token, algorithm)) == mismatch
    assert all(c.code != "OK" for c in cloud.calls)


def test_the_role_may_call_only_what_its_policy_names(cloud: Endpoint) -> None:
    creds = cloud.ram.assume_role(NODE_ROLE)
    config = sts_config(creds.access_key_id, creds.secret, creds.security_token, None)
    vpc = VpcClient(config)
    assert vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(
        region_id=REGION)).status_code == 200
    code, status = code_of(lambda: vpc.describe_vpcs(
        vpc_models.DescribeVpcsRequest(region_id=REGION)))
    assert (code, status) == ("Forbidden.RAM", 403)
    # the long-lived key has every right
    assert ecs().describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
        region_id=REGION)).status_code == 200


def test_a_key_with_a_source_condition_works_only_from_there() -> None:
    request = ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION)
    with mock() as endpoint:
        endpoint.ram = Ram({"podlab": "podlab-secret"},
                           key_policy=Policy(source_ips=("127.0.0.1/32",)))
        # in process there is no source address: a condition on one allows nothing
        assert code_of(lambda: ecs().describe_network_interfaces(request)) == (
            "Forbidden.RAM", 403)
    for allowed, ok in (("10.9.9.9/32", False), ("127.0.0.1/32", True)):
        ram = Ram({"podlab": "podlab-secret"}, key_policy=Policy(source_ips=(allowed,)))
        server = cloud_server(Endpoint(Cloud(default_topology()), ram=ram)).start()
        try:  # over HTTP the server sees the caller's address, 127.0.0.1
            call = partial(ecs(server.url.removeprefix("http://")).describe_network_interfaces,
                           request)
            if ok:
                assert call().status_code == 200
            else:
                assert code_of(call) == ("Forbidden.RAM", 403)
        finally:
            server.stop()


def role(service: MetadataService, caller: str) -> tuple[int, dict[str, str]]:
    status, body = service.answer(caller, ROLE_PATH)
    return status, json.loads(body) if status == 200 else {"error": body}


def test_metadata_rotates_the_role_credentials_before_they_expire(cloud: Endpoint,
                                                                  wall: Wall) -> None:
    service = MetadataService(lambda: cloud.cloud, cloud.ram)
    node = cloud.cloud.topology.nodes[0]
    first = role(service, str(node.primary_ip))[1]
    assert first["Code"] == "Success"
    assert first["AccessKeyId"].startswith("STS.")
    assert first["Expiration"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(wall.now + 60))
    wall.now += 29
    assert role(service, str(node.primary_ip))[1] == first  # the same set, for a while
    wall.now += 1  # half its life: the next set, while the first is still valid
    second = role(service, str(node.primary_ip))[1]
    assert second["AccessKeyId"] != first["AccessKeyId"]
    for creds in (first, second):
        assert describe(cloud.ram.principal(creds["AccessKeyId"])).status_code == 200


def test_metadata_answers_pods_only_where_allowed(cloud: Endpoint) -> None:
    node = cloud.cloud.topology.nodes[0]
    eni = cloud.cloud.create_eni(node.vswitch.id, security_groups=["sg"], secondary_count=1)
    cloud.cloud.attach_eni(eni.id, node.instance_id)
    pod_ip = eni.ips[-1]
    hardened = MetadataService(lambda: cloud.cloud, cloud.ram, pods=False)
    assert hardened.refusal(str(node.primary_ip)) is None
    assert role(hardened, str(node.primary_ip))[0] == 200
    status, body = role(hardened, pod_ip)
    assert status == 403, body
    assert hardened.refusal(pod_ip) == (status, body["error"])  # no token either
    assert hardened.answer(pod_ip, "/latest/meta-data/instance-id")[0] == 403
    bare = MetadataService(lambda: cloud.cloud, cloud.ram, pods=True)
    assert bare.answer(pod_ip, "/latest/meta-data/instance-id") == (200, node.instance_id)
    assert role(bare, pod_ip)[0] == 200
