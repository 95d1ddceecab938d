"""Who this node is, from the instance metadata service (100.100.100.200), as on ECS.

The agent trusts metadata for its identity and credentials, and, as Terway does, for each
attached ENI's gateway (`network/interfaces/macs/<mac>/gateway`); for what is attached
right now, and each vSwitch's CIDR, it asks the API, because metadata lags behind it: an
ENI the API shows InUse is ready only once metadata shows it too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

TOKEN_TTL = 21600


class MetadataError(RuntimeError):
    """Metadata did not answer, or answered something the agent cannot use."""


@dataclass(frozen=True)
class Identity:
    instance_id: str
    instance_type: str
    region: str
    zone: str
    vpc_id: str
    vswitch_id: str
    primary_mac: str
    primary_ip: str


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    expiration: float | None = None  # STS: when they expire (wall-clock seconds)


class MetadataClient:
    """A token-authenticated (IMDSv2-style) client of one metadata endpoint."""

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        self.base = f"http://{address}"
        self.timeout = timeout
        self._token: tuple[str, float] | None = None

    def _token_value(self) -> str:
        if self._token is None or self._token[1] < time.monotonic() + 60:
            request = urllib.request.Request(
                f"{self.base}/latest/api/token", method="PUT",
                headers={"X-aliyun-ecs-metadata-token-ttl-seconds": str(TOKEN_TTL)})
            self._token = (self._open(request), time.monotonic() + TOKEN_TTL)
        return self._token[0]

    def _open(self, request: urllib.request.Request) -> str:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return str(reply.read().decode())
        except (urllib.error.URLError, OSError) as e:
            raise MetadataError(f"metadata {request.full_url}: {e}") from e

    def get(self, path: str) -> str:
        request = urllib.request.Request(
            f"{self.base}/latest/meta-data/{path}",
            headers={"X-aliyun-ecs-metadata-token": self._token_value()})
        return self._open(request).strip()

    def eni_gateway(self, mac: str) -> str | None:
        """The gateway of the ENI with `mac`; None while metadata does not show it yet."""
        try:
            return self.get(f"network/interfaces/macs/{mac}/gateway")
        except MetadataError as e:
            if isinstance(e.__cause__, urllib.error.HTTPError) and e.__cause__.code == 404:
                return None
            raise

    def identity(self) -> Identity:
        return Identity(
            instance_id=self.get("instance-id"),
            instance_type=self.get("instance/instance-type"),
            region=self.get("region-id"),
            zone=self.get("zone-id"),
            vpc_id=self.get("vpc-id"),
            vswitch_id=self.get("vswitch-id"),
            primary_mac=self.get("mac"),
            primary_ip=self.get("private-ipv4"),
        )

    def credentials(self, role: str | None) -> Credentials:
        """The instance RAM role's STS credentials (the first role when none is named)."""
        role = role or self.get("ram/security-credentials/").split("\n")[0].strip("/")
        if not role:
            raise MetadataError("the instance has no RAM role; configure access keys")
        answer = json.loads(self.get(f"ram/security-credentials/{role}"))
        expiration = answer.get("Expiration")  # ISO 8601 UTC, "2026-12-08T03:00:00Z"
        return Credentials(answer["AccessKeyId"], answer["AccessKeySecret"],
                           answer.get("SecurityToken"),
                           datetime.fromisoformat(expiration).timestamp() if expiration
                           else None)
