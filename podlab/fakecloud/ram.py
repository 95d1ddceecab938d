"""RAM and STS as far as a pod network needs them: who signed a request, whether its
SecurityToken is that key's and still valid, and whether its policy lets it call the action.

Two kinds of principal, as on Alibaba Cloud: an account's long-lived AccessKey, and the
temporary credentials STS issues to an instance's RAM role (an `STS.` AccessKeyId, a secret
and a SecurityToken that expire). A temporary key is worth nothing without its own token,
and nothing after its expiry; a role may call only the actions its policy names.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from podlab.fakecloud.exceptions import (
    ForbiddenRam,
    InvalidAccessKeyId,
    InvalidSecurityTokenExpired,
    InvalidSecurityTokenMalformed,
    InvalidSecurityTokenMismatch,
)

SERVICES = {"2014-05-26": "ecs", "2016-04-28": "vpc"}  # API version -> RAM service name
NODE_ROLE = "podlab-node"
# What a node's agent calls, and nothing else (Terway's role policy, trimmed to the actions
# podlab serves): a stolen role credential cannot, say, read the whole VPC's layout.
NODE_ROLE_ACTIONS = (
    "ecs:DescribeNetworkInterfaces", "ecs:CreateNetworkInterface",
    "ecs:AttachNetworkInterface", "ecs:DetachNetworkInterface",
    "ecs:DeleteNetworkInterface", "ecs:AssignPrivateIpAddresses",
    "ecs:UnassignPrivateIpAddresses", "ecs:AssignIpv6Addresses",
    "ecs:UnassignIpv6Addresses", "ecs:DescribeInstanceTypes", "ecs:DescribeInstances",
    "vpc:DescribeVSwitches",
)
STS_LIFETIME = 3600.0
# An expired temporary key is still recognised this long (answered Expired, not NotFound).
FORGET_AFTER = 15 * 60.0


@dataclass(frozen=True)
class Policy:
    """What a principal may call (`service:Action` patterns, `*` matches any run of
    characters) and from where (the `acs:SourceIp` condition: CIDRs; empty is anywhere)."""

    actions: tuple[str, ...] = ("*",)
    source_ips: tuple[str, ...] = ()

    def allows(self, action: str, source: str | None) -> bool:
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in self.actions):
            return False
        if not self.source_ips:
            return True
        return source is not None and any(
            ipaddress.ip_address(source) in ipaddress.ip_network(cidr)
            for cidr in self.source_ips)


NODE_ROLE_POLICY = Policy(NODE_ROLE_ACTIONS)


@dataclass(frozen=True)
class Principal:
    """A key that can sign: its secret and policy; a temporary one also its token and
    expiry (wall-clock seconds)."""

    access_key_id: str
    secret: str
    policy: Policy
    security_token: str | None = None
    expires: float | None = None

    def expiration(self) -> str:
        """The expiry as Alibaba's metadata writes it (ISO 8601, UTC, seconds)."""
        assert self.expires is not None
        return datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ram:
    """An account's keys and the roles STS can issue credentials for; thread-safe."""

    def __init__(self, keys: Mapping[str, str], *, key_policy: Policy | None = None,
                 sts_lifetime: float = STS_LIFETIME,
                 wall: Callable[[], float] = time.time) -> None:
        policy = key_policy or Policy()
        self.keys = {k: Principal(k, secret, policy) for k, secret in keys.items()}
        self.roles = {NODE_ROLE: NODE_ROLE_POLICY}
        self.sts_lifetime = sts_lifetime
        self.wall = wall
        self._issued: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def assume_role(self, role: str) -> Principal:
        """New temporary credentials for `role`, valid `sts_lifetime` seconds."""
        now = self.wall()
        issued = Principal(f"STS.{secrets.token_urlsafe(18)}", secrets.token_urlsafe(30),
                           self.roles[role], security_token=secrets.token_urlsafe(96),
                           expires=now + self.sts_lifetime)
        with self._lock:
            for key in [k for k, p in self._issued.items()
                        if (p.expires or 0) + FORGET_AFTER < now]:
                del self._issued[key]
            self._issued[issued.access_key_id] = issued
        return issued

    def principal(self, access_key_id: str) -> Principal:
        with self._lock:
            found = self.keys.get(access_key_id) or self._issued.get(access_key_id)
        if found is None:
            raise InvalidAccessKeyId(f"Specified access key {access_key_id!r} is not found.")
        return found

    def secret(self, access_key_id: str) -> str:
        return self.principal(access_key_id).secret

    def check_token(self, principal: Principal, token: str | None) -> None:
        """A temporary key needs its own, unexpired token; a long-lived key takes none."""
        if principal.security_token is None:
            if token:
                raise InvalidSecurityTokenMismatch(
                    "Specified SecurityToken mismatch with the AccessKey: "
                    f"{principal.access_key_id!r} is not a temporary key.")
            return
        if not token:
            raise InvalidSecurityTokenMalformed(
                "Specified SecurityToken is malformed: a temporary AccessKeyId needs its "
                "SecurityToken.")
        if not secrets.compare_digest(token.encode(), principal.security_token.encode()):
            raise InvalidSecurityTokenMismatch(
                "Specified SecurityToken mismatch with the AccessKey.")
        assert principal.expires is not None
        if self.wall() >= principal.expires:
            raise InvalidSecurityTokenExpired(
                f"Specified SecurityToken is expired (at {principal.expiration()}).")

    @staticmethod
    def authorize(principal: Principal, version: str, action: str, source: str | None
                  ) -> None:
        auth_action = f"{SERVICES.get(version, 'unknown')}:{action}"
        if not principal.policy.allows(auth_action, source):
            raise ForbiddenRam("User not authorized to operate on the specified resource, "
                               f"or this API doesn't support RAM. (AuthAction: {auth_action}"
                               f"{f', SourceIp: {source}' if source else ''})")
