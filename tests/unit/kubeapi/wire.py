"""Plain HTTP to a test server, for what the official client hides (Tables, discovery,
watch framing, Status bodies)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from podlab.kubeapi.server import KubeApiServer


def request(server: KubeApiServer, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                       **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw.strip() else None
    finally:
        conn.close()


def watch_lines(server: KubeApiServer, path: str) -> list[dict[str, Any]]:
    """A whole watch response (the path must carry timeoutSeconds), one event per line."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        conn.close()


AS_TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


def table_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """A Table's rows as cells keyed by column name."""
    names = [c["name"] for c in found["columnDefinitions"]]
    return [dict(zip(names, row["cells"], strict=True)) for row in found["rows"]]
