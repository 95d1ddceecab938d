"""The OpenAPI listener is one a pod can reach: what it reads from a client is bounded."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.models import Cloud
from podlab.fakecloud.server import MAX_BODY, cloud_server
from podlab.fakecloud.topology import default_topology
from podlab.fakecloud.wire import Endpoint


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    server = cloud_server(Endpoint(Cloud(default_topology()))).start()
    try:
        yield server
    finally:
        server.stop()


def _post(server: BackgroundServer, length: str) -> tuple[int, dict[str, str]]:
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Length", length)
    conn.endheaders()  # the body never comes: a server that trusted the header would wait
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize(("length", "status"), [(str(MAX_BODY + 1), 413), ("-5", 400),
                                                 ("abc", 400)])
def test_a_body_the_server_would_not_read_is_refused_before_reading(
        server: BackgroundServer, length: str, status: int) -> None:
    got, body = _post(server, length)
    assert got == status
    assert "Content-Length" in body["error"]

