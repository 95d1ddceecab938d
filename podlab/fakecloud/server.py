"""The HTTP transport: the same Endpoint behind a threaded HTTP server, and on a listener
given an admin token, the admin endpoints under `/_podlab/` (state, calls, faults, reset)
that tests and people use to look in. They answer only `Authorization: Bearer <token>`:
whoever can reset the cloud can make the lab hand out addresses that are still in use."""

from __future__ import annotations

import hmac
import json
import socket
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from typing import Any

from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.exceptions import CloudError
from podlab.fakecloud.faults import FaultSettingError
from podlab.fakecloud.models import Cloud
from podlab.fakecloud.responses import render_eni
from podlab.fakecloud.wire import Endpoint

ADMIN = "/_podlab/"
MAX_BODY = 1024 * 1024  # an OpenAPI call's parameters are a few KB; a fault rule set, less


def state(cloud: Cloud) -> dict[str, Any]:
    """A JSON dump of the whole model, for debugging and for tests."""
    with cloud.lock:
        return {
            "region": cloud.topology.region,
            "vpc": cloud.topology.vpc_id,
            "vswitches": {v: cloud.available_ips(v) for v in cloud.vswitches},
            "enis": [render_eni(cloud, e) for e in cloud.all_enis()],
        }


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint
    admin_token: str | None = None
    _body: bytes = b""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait 40 ms.
    disable_nagle_algorithm = True
    timeout = 30  # seconds a client may stall mid-request before its connection is closed

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _admin(self) -> None:
        path = self.path[len(ADMIN):].split("?")[0]
        assert self.admin_token is not None
        offered = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(offered.encode(), self.admin_token.encode()):
            self._reply(401, {"Content-Type": "application/json"}, json.dumps(
                {"error": "the admin endpoints need the lab's admin token "
                          "(Authorization: Bearer <token>)"}).encode())
            return
        if path == "state":
            data: object = state(self.endpoint.cloud)
        elif path == "calls":
            data = [asdict(c) for c in self.endpoint.calls]
        elif path == "faults" and self.command == "POST":
            try:
                self.endpoint.faults.set(json.loads(self._body or b"{}"))
            except (ValueError, CloudError) as e:  # the rules in force stay as they were
                field = {"field": e.field} if isinstance(e, FaultSettingError) else {}
                self._reply(400, {"Content-Type": "application/json"},
                            json.dumps({"error": str(e), **field}).encode())
                return
            data = self.endpoint.faults.describe()
        elif path == "faults":
            data = self.endpoint.faults.describe()
        elif path == "reset" and self.command == "POST":
            self.endpoint.reset()
            data = {"reset": True}
        else:
            self._reply(404, {"Content-Type": "application/json"},
                        json.dumps({"error": f"no admin endpoint {path!r}"}).encode())
            return
        self._reply(200, {"Content-Type": "application/json"}, json.dumps(data).encode())

    def _api(self) -> None:
        raw = self.headers.get("Content-Length") or "0"
        length = int(raw) if raw.isdigit() else -1
        if not 0 <= length <= MAX_BODY:  # a pod reaches this listener: bound what it sends
            self.close_connection = True
            self._reply(413 if length > MAX_BODY else 400, {"Content-Type": "application/json"},
                        json.dumps({"error": f"Content-Length {raw!r}: a request body is "
                                             f"0 to {MAX_BODY} bytes"}).encode())
            return
        body = self.rfile.read(length) if length else b""
        self._body = body
        if self.admin_token is not None and self.path.startswith(ADMIN):
            self._admin()
            return
        r = self.endpoint.handle(self.command, self.path, dict(self.headers.items()), body,
                                 source=self.client_address[0])
        self._reply(r.status, r.headers, r.body)

    do_GET = _api
    do_POST = _api

    def log_message(self, format: str, *args: object) -> None:
        """The call log records every call; the default stderr line adds nothing."""


def cloud_server(endpoint: Endpoint, host: str = "127.0.0.1", port: int = 0,
                 sock: socket.socket | None = None, *,
                 admin_token: str | None = None) -> BackgroundServer:
    """Serve an Endpoint over HTTP; `sock` lets the lab bind it inside the VPC. Without an
    `admin_token` the admin paths are not served at all (any other path's answer)."""
    handler = type("Handler", (_Handler,), {"endpoint": endpoint, "admin_token": admin_token})
    return BackgroundServer(handler, host, port, sock)
