"""The API holds under load and bad input as kube-apiserver does: no reset connection, no
5xx, bodies bounded in size and time, YAML aliases bounded, framing errors answered 400."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podlab.kubeapi import framing
from podlab.kubeapi import server as server_module
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.objects import pod
from tests.unit.kubeapi.wire import request


@pytest.fixture
def server(store: Store) -> Iterator[KubeApiServer]:
    srv = KubeApiServer(store).start()
    yield srv
    srv.stop()


def raw(server: KubeApiServer, data: bytes, timeout: float = 10) -> tuple[int, Any]:
    """Send bytes as they are; the status line and the JSON body of the answer."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.partition(b"\r\n\r\n")[2] or b"null")


def pods(store: Store) -> list[str]:
    return [p["metadata"]["name"] for p in store.list("pods", "default")[0]]


def test_fifty_creates_and_two_hundred_gets_at_once_all_succeed(server: KubeApiServer,
                                                                store: Store) -> None:
    with ThreadPoolExecutor(max_workers=50) as pool:
        created = list(pool.map(lambda i: request(server, "POST", "/api/v1/namespaces/"
                                                  "default/pods", pod(f"p{i}"))[0], range(50)))
    assert created == [201] * 50
    with ThreadPoolExecutor(max_workers=200) as pool:
        got = list(pool.map(lambda i: request(server, "GET", f"/api/v1/namespaces/default/"
                                              f"pods/p{i % 50}")[0], range(200)))
    assert got == [200] * 200
    assert len(pods(store)) == 50
    # A full accept queue drops SYNs, and clients wait seconds to retry: ss shows the
    # queue's size as Send-Q of the listening socket.
    port = urlsplit(server.url).port
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert int(listening[2]) >= 256


def test_a_body_over_the_limit_is_413_and_stores_nothing(server: KubeApiServer,
                                                         store: Store) -> None:
    big = pod("big")
    big["metadata"]["annotations"] = {"x": "y" * framing.MAX_BODY}
    code, status = request(server, "POST", "/api/v1/namespaces/default/pods", big)
    assert (code, status["reason"], status["kind"]) == (413, "RequestEntityTooLarge", "Status")
    data = b"0" * (framing.MAX_BODY + 1)
    chunked = (b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
               + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
    assert raw(server, chunked)[0] == 413
    assert pods(store) == []


def test_a_yaml_alias_bomb_is_refused(server: KubeApiServer, store: Store) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    manifest = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\n  annotations: {}\n"
                "spec:\n  containers: [{name: app, image: busybox}]\n"
                "lol:\n" + "\n".join("  " + line for line in levels) + "\n").encode()
    assert len(manifest) < 1000
    code, status = request_bytes(server, "POST", "/api/v1/namespaces/default/pods", manifest,
                                 "application/yaml")
    assert (code, status["reason"]) == (400, "BadRequest")
    assert "aliasing" in status["message"]
    assert pods(store) == []


def request_bytes(server: KubeApiServer, method: str, path: str, body: bytes,
                  content_type: str) -> tuple[int, Any]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


@pytest.mark.parametrize("framing_error", [
    b"Content-Length: abc\r\n\r\n{}",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}}}}\r\n0\r\n\r\n",
])
def test_malformed_framing_is_400(server: KubeApiServer, framing_error: bytes) -> None:
    code, status = raw(server, b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\n" + framing_error)
    assert (code, status["kind"], status["reason"]) == (400, "Status", "BadRequest")


def test_a_half_sent_body_frees_its_thread(server: KubeApiServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=10) as s:
        s.sendall(b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        assert s.recv(1) == b"", "the server closes the connection"
        assert time.monotonic() - started < 9, "it did not wait for the client"
    assert request(server, "GET", "/version")[0] == 200


@pytest.mark.parametrize("patch", [{"$setElementOrder/containers": 5},
                                   {"spec": {"$setElementOrder/containers": 5}},
                                   {"spec": {"containers": [{"$patch": 7}]}},
                                   {"spec": {"$retainKeys": "x"}},
                                   {"metadata": {"labels": ["x"]}}])
def test_a_malformed_strategic_patch_is_a_client_error(server: KubeApiServer,
                                                       patch: dict[str, Any]) -> None:
    request(server, "POST", "/api/v1/namespaces/default/pods", pod("p"))
    code, status = request(server, "PATCH", "/api/v1/namespaces/default/pods/p", patch,
                           {"Content-Type": "application/strategic-merge-patch+json"})
    assert code in (400, 422), status
    assert status["kind"] == "Status"


METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])
PATHS = st.one_of(
    st.sampled_from(["/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods/p",
                     "/apis/apps/v1/namespaces/default/deployments/d", "/api/v1/nodes",
                     "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
                     "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=0",
                     "/api/v1/namespaces/default/pods/p/status", "/openapi/v3/x", "/apis/x"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)
    .map(lambda t: "/" + t))
CONTENT_TYPES = st.sampled_from(["application/json", "application/yaml",
                                 "application/merge-patch+json",
                                 "application/strategic-merge-patch+json",
                                 "application/json-patch+json", "text/plain"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(
                        ["metadata", "name", "spec", "containers", "$patch", "op", "path",
                         "value", "$setElementOrder/containers", "$retainKeys", "kind",
                         "apiVersion", "labels", "ports"]), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, content_type=CONTENT_TYPES, body=JSON)
def test_no_request_makes_a_5xx(server: KubeApiServer, method: str, path: str,
                                content_type: str, body: Any) -> None:
    request(server, "POST", "/api/v1/namespaces/default/pods", pod("p"))  # 409 once there
    code, answer = request_bytes(server, method, path, json.dumps(body).encode(), content_type)
    assert code < 500, answer
    if code >= 400:
        assert answer["kind"] == "Status"
    assert request(server, "GET", "/version")[0] == 200
