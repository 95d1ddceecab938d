"""DescribeNetworkInterfaces over HTTP with 1000 ENIs in the cloud, through the official
SDK, against a reference measured in the same run: a bare HTTP server answering the very
same bytes, so the ratio is the fake cloud's own cost. Prints figures; asserts no time."""

from __future__ import annotations

import time
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest
from alibabacloud_ecs20140526 import models as m

from podlab.fakecloud import Cloud, Endpoint, Topology
from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.server import cloud_server
from tests.unit.fakecloud.sdk import REGION, ecs, rpc_query

CALLS = 200
WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-big", "zone": "z1", "cidr": "10.0.0.0/20"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-big"}],
})


def rate(server: BackgroundServer, page_size: int) -> float:
    client = ecs(endpoint=server.url.removeprefix("http://"))
    request = m.DescribeNetworkInterfacesRequest(region_id=REGION, page_size=page_size)
    started = time.perf_counter()
    for _ in range(CALLS):
        body = client.describe_network_interfaces(request).body
    elapsed = time.perf_counter() - started
    assert body.total_count == 1001
    assert len(body.network_interface_sets.network_interface_set) == page_size
    return CALLS / elapsed


def one_answer(server: BackgroundServer, page_size: int) -> bytes:
    """A real answer of the fake cloud, for the reference server to replay."""
    query = rpc_query("DescribeNetworkInterfaces", "2014-05-26",
                      {"RegionId": REGION, "PageSize": str(page_size)})
    request = urllib.request.Request(f"{server.url}/?{query}", method="POST", data=b"")
    with urllib.request.urlopen(request) as reply:
        return bytes(reply.read())


def replaying(answer: bytes) -> type[BaseHTTPRequestHandler]:
    class Replay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            """Silent, like the fake cloud."""

    return Replay


@pytest.mark.parametrize("page_size", [10, 100])
def test_describe_network_interfaces_throughput(page_size: int) -> None:
    endpoint = Endpoint(Cloud(WORLD))
    for _ in range(1000):
        endpoint.cloud.create_eni("vsw-big", security_groups=["sg"])
    fake = cloud_server(endpoint).start()
    try:
        fake_rate = rate(fake, page_size)
        answer = one_answer(fake, page_size)
    finally:
        fake.stop()
    reference = BackgroundServer(replaying(answer)).start()
    try:
        reference_rate = rate(reference, page_size)
    finally:
        reference.stop()
    print(f"\nDescribeNetworkInterfaces, 1000 ENIs, {page_size} per page, {CALLS} SDK calls: "
          f"fakecloud {fake_rate:.0f}/s, bare server replaying the same bytes "
          f"{reference_rate:.0f}/s, ratio {fake_rate / reference_rate:.2f} (goal >= 500/s)")
