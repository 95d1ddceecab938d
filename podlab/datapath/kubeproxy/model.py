"""What a kube-proxy programs: one virtual service per (Service, port), and its endpoints."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    """A Service's ClusterIP and one of its ports, with the ready endpoints behind it."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # "tcp" | "udp"
    cluster_ip: str
    port: int
    backends: tuple[Backend, ...]

    @property
    def key(self) -> str:
        """`ns/name:port` as kube-proxy names a service port in comments and logs."""
        return f"{self.namespace}/{self.name}:{self.port_name}"


def chain_hash(*parts: str) -> str:
    """16 characters of base32(sha256): stable, collision-safe chain names under 29 bytes."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return base64.b32encode(digest)[:16].decode()
