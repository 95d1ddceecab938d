"""Instance metadata: a token first, then each instance sees itself and its ENIs, by the
source address of its request, possibly lagging the API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from podlab.fakecloud import DEFAULT_CREDENTIALS, Cloud, default_topology
from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.metadata import TOKEN_HEADER, TTL_HEADER, MetadataService, metadata_server
from podlab.fakecloud.ram import Ram
from tests.unit.fakecloud.test_sdk_lifecycle import Clock

TOPOLOGY = default_topology(nodes=2)
N2 = TOPOLOGY.node("n2")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud() -> Cloud:
    return Cloud(TOPOLOGY)


@pytest.fixture
def server(cloud: Cloud, clock: Clock) -> Iterator[BackgroundServer]:
    service = MetadataService(lambda: cloud, Ram(DEFAULT_CREDENTIALS), lag=5.0, clock=clock)
    srv = metadata_server(service, caller=lambda _peer: str(N2.primary_ip)).start()
    yield srv
    srv.stop()


def get(server: BackgroundServer, path: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"{server.url}/latest/meta-data/{path}",
                                     headers={TOKEN_HEADER: token} if token else {})
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def token(server: BackgroundServer) -> str:
    request = urllib.request.Request(f"{server.url}/latest/api/token", method="PUT",
                                     headers={TTL_HEADER: "60"})
    with urllib.request.urlopen(request) as reply:
        return str(reply.read().decode())


def test_no_token_no_answer(server: BackgroundServer) -> None:
    assert get(server, "instance-id", None)[0] == 401


def test_an_instance_sees_itself(server: BackgroundServer) -> None:
    t = token(server)
    assert get(server, "instance-id", t) == (200, N2.instance_id)
    assert get(server, "zone-id", t) == (200, N2.zone)
    assert get(server, "instance/instance-type", t) == (200, "ecs.g7.large")
    assert get(server, "mac", t) == (200, N2.mac)
    assert get(server, "network/interfaces/macs/", t) == (200, f"{N2.mac}/")
    base = f"network/interfaces/macs/{N2.mac}"
    assert get(server, f"{base}/network-interface-id", t) == (200, N2.primary_eni_id)
    assert get(server, f"{base}/gateway", t) == (200, str(N2.vswitch.gateway))
    assert json.loads(get(server, f"{base}/private-ipv4s", t)[1]) == [str(N2.primary_ip)]
    assert get(server, f"{base}/ipv6s", t)[0] == 404


def test_metadata_lags_the_api(server: BackgroundServer, cloud: Cloud, clock: Clock) -> None:
    t = token(server)
    get(server, "instance-id", t)  # the view as of t=0
    eni = cloud.create_eni("vsw-b", security_groups=["sg"])
    cloud.attach_eni(eni.id, N2.instance_id)
    clock.now = 1.0
    assert get(server, "network/interfaces/macs/", t) == (200, f"{N2.mac}/")
    clock.now = 6.0
    assert get(server, "network/interfaces/macs/", t)[1].splitlines() == [
        f"{N2.mac}/", f"{eni.mac}/"]
