"""The agent's cloud client with the instance RAM role: its STS credentials come from
metadata over HTTP, as on a node, and are read again before they expire, so calls keep
working across rotations; a client that kept its first set is refused once it expires.
And a 409 Operation.Conflict (an ENI still attaching) is retried, not fatal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pytest

from podlab.cni.cloudapi import CloudApi, CloudCallError, RoleCredentials
from podlab.cni.identity import Credentials, MetadataClient
from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.metadata import MetadataService, metadata_server
from podlab.fakecloud.mock import mock
from podlab.fakecloud.wire import Endpoint
from tests.unit.agent.harness import Clock, node_of

TYPE = "ecs.g7.large"
LIFETIME = 60.0


@pytest.fixture
def wall() -> Clock:
    return Clock(now=time.time())  # STS expiry is wall-clock time


@pytest.fixture
def cloud(wall: Clock) -> Iterator[Endpoint]:
    with mock(clock=wall) as endpoint:
        endpoint.ram.wall = wall
        endpoint.ram.sts_lifetime = LIFETIME
        yield endpoint


@pytest.fixture
def metadata(cloud: Endpoint) -> Iterator[MetadataClient]:
    """Node n1's view of metadata, over HTTP on loopback."""
    service = MetadataService(lambda: cloud.cloud, cloud.ram)
    ip = str(node_of(cloud).primary_ip)
    server: BackgroundServer = metadata_server(service, caller=lambda _peer: ip).start()
    yield MetadataClient(server.url.removeprefix("http://"))
    server.stop()


def test_role_credentials_rotate_and_calls_keep_working(cloud: Endpoint, wall: Clock,
                                                        metadata: MetadataClient) -> None:
    role = RoleCredentials(partial(metadata.credentials, None), wall=wall)
    api = CloudApi("ecs.podlab.local", "cn-hangzhou", role, seed=0)
    stale = CloudApi("ecs.podlab.local", "cn-hangzhou", role.current, seed=0)
    for _ in range(8):  # four lifetimes
        assert api.quotas(TYPE).enis == 3
        wall.now += LIFETIME / 2
    keys = [c.access_key_id for c in cloud.calls]
    assert all(k.startswith("STS.") for k in keys)
    assert len(set(keys)) >= 4, "the agent kept signing with the same set"
    assert [c.code for c in cloud.calls] == ["OK"] * 8
    with pytest.raises(CloudCallError) as caught:  # the first set, long expired
        stale.quotas(TYPE)
    assert caught.value.code == "InvalidSecurityToken.Expired"


def test_a_failed_read_keeps_valid_credentials(cloud: Endpoint, wall: Clock,
                                               metadata: MetadataClient) -> None:
    role = RoleCredentials(partial(metadata.credentials, None), wall=wall)
    api = CloudApi("ecs.podlab.local", "cn-hangzhou", role, deadline=5.0, sleep=wall.sleep,
                   clock=wall, seed=0)
    metadata.base = "http://127.0.0.1:9"  # metadata away (nothing listens on port 9)
    wall.now += LIFETIME * 0.75  # past the renewal, before the expiry
    assert api.quotas(TYPE).enis == 3
    wall.now += LIFETIME  # expired, and metadata still away: a network error, retried
    with pytest.raises(CloudCallError, match="metadata") as caught:
        api.quotas(TYPE)
    assert caught.value.retryable
    assert [c.code for c in cloud.calls] == ["OK"], "nothing signed with the expired set"


def test_operation_conflict_is_retried(wall: Clock) -> None:
    with mock(attach_delay=0.5, clock=wall) as cloud:
        node = node_of(cloud)
        eni = cloud.cloud.create_eni(node.vswitch.id, security_groups=["sg-1"])
        cloud.cloud.attach_eni(eni.id, node.instance_id)  # Attaching for 0.5 s: a 409
        api = CloudApi("ecs.podlab.local", "cn-hangzhou", Credentials("podlab", "podlab-secret"),
                       sleep=wall.sleep,
                       clock=wall, seed=0)
        assert len(api.assign_ips(eni.id, 2, "tok-1")) == 2
        codes = [c.code for c in cloud.calls if c.action == "AssignPrivateIpAddresses"]
    assert codes[0] == "Operation.Conflict"
    assert codes[-1] == "OK"
    assert wall.slept, "it waited before retrying"
