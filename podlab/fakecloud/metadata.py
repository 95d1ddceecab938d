"""Instance metadata (100.100.100.200): each instance sees its own identity and ENIs,
recognised by the source address of its request, as on ECS.

The view may lag the API by `lag` seconds, as the real service does: each answer comes
from the newest snapshot at least that old, so an agent that trusts metadata right after
an attach sees the stale world a real one would.

Every instance has the RAM role `podlab-node`: `ram/security-credentials/podlab-node`
answers STS credentials for it, the same until half their lifetime has passed and then
new ones, so a client that reads again before its set expires never holds an expired one.
An instance's pods (the addresses of its ENIs) are answered as the instance only with
`pods=True`, as on a bare ECS instance; hardened clusters block them, and so do labs by
default: a pod that could read the role's credentials could act as its node's agent.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.models import Cloud
from podlab.fakecloud.ram import NODE_ROLE, Principal, Ram

TOKEN_HEADER = "X-aliyun-ecs-metadata-token"
TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"
PREFIX = "/latest/meta-data/"
View = dict[str, Any]  # instance id -> its metadata tree


def snapshot(cloud: Cloud) -> View:
    """Every instance's metadata tree, as of now."""
    t = cloud.topology
    view: View = {}
    with cloud.lock:
        enis = cloud.all_enis()
        for node in cloud.instances.values():
            macs = {}
            for eni in (e for e in enis if e.instance_id == node.instance_id
                        and e.status == "InUse"):
                macs[eni.mac] = {
                    "network-interface-id": eni.id,
                    "primary-ip-address": eni.primary_ip,
                    "gateway": str(eni.vswitch.gateway),
                    "private-ipv4s": json.dumps(eni.ips),
                    "vswitch-id": eni.vswitch.id,
                    "vswitch-cidr-block": str(eni.vswitch.cidr),
                    "netmask": str(eni.vswitch.cidr.netmask),
                    **({"ipv6s": json.dumps(eni.ipv6)} if eni.ipv6 else {}),
                }
            view[node.instance_id] = {
                "instance-id": node.instance_id,
                "instance/instance-type": node.instance_type,
                "region-id": t.region,
                "zone-id": node.zone,
                "vswitch-id": node.vswitch.id,
                "vpc-id": t.vpc_id,
                "vpc-cidr-block": str(t.vpc_cidr),
                "mac": node.mac,
                "private-ipv4": str(node.primary_ip),
                "macs": macs,
                "addresses": [ip for eni in enis if eni.instance_id == node.instance_id
                              for ip in eni.ips],
            }
    return view


RAM_PREFIX = "ram/security-credentials/"


class MetadataService:
    """Answers metadata paths for a caller address, from a possibly lagging view; the RAM
    role's credentials come from `ram` (the endpoint's, which checks them)."""

    def __init__(self, cloud: Callable[[], Cloud], ram: Ram, lag: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, *, pods: bool = True) -> None:
        self.cloud = cloud
        self.ram = ram
        self.lag = lag
        self.clock = clock
        self.pods = pods
        self._history: list[tuple[float, View]] = []
        self._tokens: dict[str, float] = {}
        self._role_credentials: dict[str, Principal] = {}  # instance id -> its current set
        self._lock = threading.Lock()

    def view(self) -> View:
        now = self.clock()
        current = snapshot(self.cloud())
        with self._lock:
            self._history.append((now, current))
            old = [v for at, v in self._history if at <= now - self.lag]
            # Keep the newest snapshot old enough to serve, and everything after it.
            keep = len(old) - 1 if old else 0
            self._history = self._history[keep:]
        return old[-1] if old else self._history[0][1]

    def token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = self.clock() + ttl
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._tokens.get(token, 0) > self.clock()

    def refusal(self, caller: str) -> tuple[int, str] | None:
        """Why `caller` gets nothing at all (not even a token), or None."""
        view = self.view()
        return None if self._instance(view, caller) is not None else _refused(view, caller)

    def _instance(self, view: View, caller: str) -> View | None:
        return next((t for t in view.values() if caller == t["private-ipv4"]
                     or (self.pods and caller in t["addresses"])), None)

    def answer(self, caller: str, path: str) -> tuple[int, str]:
        """(status, body) for a GET of `path` from address `caller`."""
        view = self.view()
        tree = self._instance(view, caller)
        if tree is None:
            return _refused(view, caller)
        key = path[len(PREFIX):] if path.startswith(PREFIX) else None
        if key is None:
            return 404, "not found"
        if key.startswith(RAM_PREFIX):
            return self._role(tree["instance-id"], key[len(RAM_PREFIX):])
        if key in ("network/interfaces/macs", "network/interfaces/macs/"):
            return 200, "\n".join(f"{mac}/" for mac in tree["macs"])
        if key.startswith("network/interfaces/macs/"):
            mac, _, leaf = key[len("network/interfaces/macs/"):].partition("/")
            value = tree["macs"].get(mac, {}).get(leaf)
            return (200, value) if value is not None else (404, "not found")
        value = tree.get(key)
        return (200, value) if isinstance(value, str) else (404, "not found")

    def _role(self, instance_id: str, name: str) -> tuple[int, str]:
        if not name:
            return 200, NODE_ROLE
        if name != NODE_ROLE:
            return 404, "not found"
        with self._lock:
            current = self._role_credentials.get(instance_id)
            if current is None or current.expires is None or \
                    self.ram.wall() >= current.expires - self.ram.sts_lifetime / 2:
                current = self._role_credentials[instance_id] = self.ram.assume_role(NODE_ROLE)
        assert current.expires is not None
        issued = datetime.fromtimestamp(current.expires - self.ram.sts_lifetime, UTC)
        return 200, json.dumps({"AccessKeyId": current.access_key_id,
                                "AccessKeySecret": current.secret,
                                "SecurityToken": current.security_token,
                                "Expiration": current.expiration(),
                                "LastUpdated": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "Code": "Success"})


def _refused(view: View, caller: str) -> tuple[int, str]:
    if any(caller in t["addresses"] for t in view.values()):
        return 403, (f"{caller} is a pod's address: instance metadata is not served to pods "
                     "here (the lab's pod_metadata setting)")
    return 404, f"no instance has the address {caller}"


class _Handler(BaseHTTPRequestHandler):
    service: MetadataService
    caller: Callable[[str], str]
    disable_nagle_algorithm = True

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        refusal = self.service.refusal(type(self).caller(self.client_address[0]))
        if refusal is not None:
            self._send(*refusal)
            return
        if self.path != "/latest/api/token":
            self._send(404, "not found")
            return
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            self._send(400, f"{TTL_HEADER} must be a number of seconds")
            return
        if not 1 <= ttl <= 21600:
            self._send(400, f"{TTL_HEADER} must be 1 to 21600")
            return
        self._send(200, self.service.token(ttl))

    def do_GET(self) -> None:
        if not self.service.valid(self.headers.get(TOKEN_HEADER)):
            self._send(401, "a valid metadata token is required")
            return
        self._send(*self.service.answer(type(self).caller(self.client_address[0]), self.path))

    def log_message(self, format: str, *args: object) -> None:
        """Agents poll metadata; a line per request would drown the lab's logs."""


def metadata_server(service: MetadataService, host: str = "127.0.0.1", port: int = 0,
                    sock: socket.socket | None = None,
                    caller: Callable[[str], str] = lambda address: address) -> BackgroundServer:
    """The service over HTTP; `caller` maps the peer address to the instance's (tests on
    loopback pass one), `sock` binds it where the lab wants (100.100.100.200:80)."""
    handler = type("Handler", (_Handler,), {"service": service,
                                            "caller": staticmethod(caller)})
    return BackgroundServer(handler, host, port, sock)
