"""The agent's only way to the cloud: the official ECS/VPC SDKs, with retries it owns.

The new SDKs retry nothing by themselves, so this module does: jittered exponential
back-off on throttling, internal errors, 5xx and network failures, honouring the
server's `retry-after`, within a deadline per call. Calls that allocate carry a
ClientToken chosen by the caller (and written to the intent log first), so a retry — or a
restarted agent replaying its intent — never allocates twice.

Credentials are a config's AccessKey or the instance RAM role's STS credentials, which
expire: those reach the SDK through its credentials-provider interface, read again from
metadata before they expire (`RoleCredentials`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from alibabacloud_credentials.client import Client as CredentialClient  # type: ignore[import-untyped]
from alibabacloud_credentials.provider.refreshable import (  # type: ignore[import-untyped]
    Credentials as SdkCredentials,
)
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_vpc20160428 import models as vpc_models
from alibabacloud_vpc20160428.client import Client as VpcClient
from requests import RequestException
from Tea.exceptions import TeaException

from podlab.cni.identity import Credentials, MetadataError

RETRYABLE = ("Throttling", "InternalError", "ServiceUnavailable", "UnknownError",
             "Operation.Conflict", "IncorrectInstanceStatus")
EXHAUSTED = ("InvalidVSwitchId.IpNotEnough", "QuotaExceeded.PrivateIpAddress")
QUOTA = ("EniPerInstanceLimitExceeded", "InvalidOperation.Ipv4CountExceeded",
         "InvalidOperation.Ipv6CountExceeded", "PrivateIpQuotaExceeded",
         "QuotaExceed.PrivateIpAddress")
PAGE = 100
# An attach or detach answered "the ENI is not in the state for that": in this agent's
# flows, the attach or detach it retried had already happened.
ENI_BUSY = ("InvalidEniState",)


class CloudCallError(RuntimeError):
    """A cloud call failed for good (or ran out of retries); `code` is Alibaba's."""

    def __init__(self, action: str, code: str, message: str, status: int | None = None
                 ) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action, self.code, self.status = action, code, status

    @property
    def retryable(self) -> bool:
        return (self.code.startswith(RETRYABLE) or self.code == "Network"
                or (self.status or 0) >= 500)

    @property
    def exhausted(self) -> bool:
        return self.code in EXHAUSTED

    @property
    def quota(self) -> bool:
        return self.code in QUOTA


@dataclass
class EniInfo:
    """An ENI as DescribeNetworkInterfaces tells it."""

    id: str
    mac: str
    status: str
    type: str
    vswitch_id: str
    primary_ip: str
    ips: list[str]
    ipv6: list[str] = field(default_factory=list)
    instance_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> EniInfo:
        ips = [s["PrivateIpAddress"] for s in
               raw.get("PrivateIpSets", {}).get("PrivateIpSet", [])]
        ipv6 = [s["Ipv6Address"] if isinstance(s, dict) else s
                for s in raw.get("Ipv6Sets", {}).get("Ipv6Set", [])]
        return cls(id=raw["NetworkInterfaceId"], mac=raw.get("MacAddress", ""),
                   status=raw.get("Status", ""), type=raw.get("Type", ""),
                   vswitch_id=raw.get("VSwitchId", ""),
                   primary_ip=raw.get("PrivateIpAddress", ""), ips=ips or
                   [raw.get("PrivateIpAddress", "")], ipv6=ipv6,
                   instance_id=raw.get("InstanceId", ""),
                   tags={t["TagKey"]: t["TagValue"] for t in raw.get("Tags", {}).get("Tag", [])})


@dataclass(frozen=True)
class VSwitchInfo:
    id: str
    zone: str
    cidr: str
    available: int


@dataclass(frozen=True)
class Quotas:
    """An instance type's networking limits (DescribeInstanceTypes)."""

    enis: int
    ipv4_per_eni: int
    ipv6_per_eni: int


CallHook = Callable[[str, str, float], None]  # action, result code ("OK" or error), seconds


class RoleCredentials:
    """An `ICredentialsProvider` (the SDK's interface) of a RAM role's STS credentials:
    `fetch` reads them from metadata, again once half of their remaining life has passed
    (metadata hands out the next set before the current one expires), so a call never
    signs with an expired set. A failed read keeps the current set while it is valid and
    is tried again at half of what remains; once it has expired, the read's error is
    raised."""

    def __init__(self, fetch: Callable[[], Credentials],
                 wall: Callable[[], float] = time.time) -> None:
        self.fetch, self.wall = fetch, wall
        self._lock = threading.Lock()
        self.current = fetch()
        self._renew_at = self._half_life()

    def _half_life(self) -> float:
        expiration = self.current.expiration
        now = self.wall()
        return float("inf") if expiration is None else now + (expiration - now) / 2

    def get_credentials(self) -> SdkCredentials:
        with self._lock:
            if self.wall() >= self._renew_at:
                try:
                    self.current = self.fetch()
                except MetadataError:
                    if self.wall() >= (self.current.expiration or 0.0):
                        raise
                self._renew_at = self._half_life()
            c = self.current
        return SdkCredentials(access_key_id=c.access_key_id,
                              access_key_secret=c.access_key_secret,
                              security_token=c.security_token,
                              provider_name=self.get_provider_name())

    @staticmethod
    def get_provider_name() -> str:
        return "ecs_ram_role"


class CloudApi:
    """One region's ECS and VPC clients, with retries and a hook per call for metrics."""

    def __init__(self, endpoint: str, region: str,
                 credentials: Credentials | RoleCredentials, *,
                 protocol: str = "http", deadline: float = 30.0,
                 on_call: CallHook | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None) -> None:
        config = Config(endpoint=endpoint, region_id=region, protocol=protocol,
                        read_timeout=10000, connect_timeout=3000)
        if isinstance(credentials, RoleCredentials):
            config.credential = CredentialClient(provider=credentials)
        else:
            config.access_key_id = credentials.access_key_id
            config.access_key_secret = credentials.access_key_secret
            config.security_token = credentials.security_token
        self.region = region
        self.ecs = EcsClient(config)
        self.vpc = VpcClient(config)
        self.deadline = deadline
        self.on_call = on_call
        self.sleep, self.clock = sleep, clock
        self.random = random.Random(seed)

    # -- the retry loop ---------------------------------------------------------------

    def call(self, action: str, do: Callable[[], Any], done: tuple[str, ...] = ()
             ) -> dict[str, Any]:
        """Run one SDK call, retrying what is worth retrying; the body as a dict. An error
        whose code contains one of `done` means the work is already done (a retry after a
        lost answer, or a crash between the call and its commit, meets exactly that), and
        is answered as success with an empty body."""
        give_up = self.clock() + self.deadline
        attempt = 0
        while True:
            started = self.clock()
            try:
                body: dict[str, Any] = do().body.to_map()
            except (TeaException, RequestException, OSError) as e:
                error = _as_call_error(action, e)
                self._report(action, error.code, started)
                if any(code in error.code for code in done):
                    return {}
                attempt += 1
                pause = min(5.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + self.random.random())
                pause = max(pause, _retry_after(e))
                if not error.retryable or self.clock() + pause > give_up:
                    raise error from e
                self.sleep(pause)
                continue
            self._report(action, "OK", started)
            return body

    def _report(self, action: str, result: str, started: float) -> None:
        if self.on_call:
            self.on_call(action, result, self.clock() - started)

    # -- ENIs -------------------------------------------------------------------------

    def describe_enis(self, *, instance_id: str | None = None,
                      eni_ids: list[str] | None = None,
                      tags: dict[str, str] | None = None) -> list[EniInfo]:
        found: list[EniInfo] = []
        page = 1
        while True:
            request = ecs_models.DescribeNetworkInterfacesRequest(
                region_id=self.region, instance_id=instance_id,
                network_interface_id=eni_ids or None, page_number=page, page_size=PAGE,
                tag=[ecs_models.DescribeNetworkInterfacesRequestTag(key=k, value=v)
                     for k, v in (tags or {}).items()] or None)
            body = self.call("DescribeNetworkInterfaces",
                             partial(self.ecs.describe_network_interfaces, request))
            rows = body.get("NetworkInterfaceSets", {}).get("NetworkInterfaceSet", [])
            found += [EniInfo.parse(row) for row in rows]
            if len(rows) < PAGE or len(found) >= int(body.get("TotalCount", 0)):
                return found
            page += 1

    def create_eni(self, vswitch_id: str, security_groups: list[str], ip_count: int,
                   tags: dict[str, str], token: str) -> EniInfo:
        """A new ENI holding `ip_count` addresses in all (its primary among them)."""
        request = ecs_models.CreateNetworkInterfaceRequest(
            region_id=self.region, v_switch_id=vswitch_id,
            security_group_ids=security_groups or None,
            secondary_private_ip_address_count=ip_count - 1 or None,
            tag=[ecs_models.CreateNetworkInterfaceRequestTag(key=k, value=v)
                 for k, v in tags.items()], client_token=token,
            description="created by the podlab agent")
        body = self.call("CreateNetworkInterface",
                         lambda: self.ecs.create_network_interface(request))
        return EniInfo.parse(body)

    def attach(self, eni_id: str, instance_id: str) -> None:
        request = ecs_models.AttachNetworkInterfaceRequest(
            region_id=self.region, network_interface_id=eni_id, instance_id=instance_id)
        self.call("AttachNetworkInterface",
                  lambda: self.ecs.attach_network_interface(request), done=ENI_BUSY)

    def detach(self, eni_id: str, instance_id: str) -> None:
        request = ecs_models.DetachNetworkInterfaceRequest(
            region_id=self.region, network_interface_id=eni_id, instance_id=instance_id)
        self.call("DetachNetworkInterface",
                  lambda: self.ecs.detach_network_interface(request), done=ENI_BUSY)

    def delete_eni(self, eni_id: str) -> None:
        request = ecs_models.DeleteNetworkInterfaceRequest(
            region_id=self.region, network_interface_id=eni_id)
        self.call("DeleteNetworkInterface",
                  lambda: self.ecs.delete_network_interface(request), done=("InvalidEniId",))

    # -- addresses --------------------------------------------------------------------

    def assign_ips(self, eni_id: str, count: int, token: str) -> list[str]:
        request = ecs_models.AssignPrivateIpAddressesRequest(
            region_id=self.region, network_interface_id=eni_id,
            secondary_private_ip_address_count=count, client_token=token)
        body = self.call("AssignPrivateIpAddresses",
                         lambda: self.ecs.assign_private_ip_addresses(request))
        return list(body["AssignedPrivateIpAddressesSet"]["PrivateIpSet"]["PrivateIpAddress"])

    def unassign_ips(self, eni_id: str, ips: list[str]) -> None:
        request = ecs_models.UnassignPrivateIpAddressesRequest(
            region_id=self.region, network_interface_id=eni_id, private_ip_address=ips)
        self.call("UnassignPrivateIpAddresses",
                  lambda: self.ecs.unassign_private_ip_addresses(request), done=("InvalidIp",))

    def assign_ipv6(self, eni_id: str, count: int, token: str) -> list[str]:
        request = ecs_models.AssignIpv6AddressesRequest(
            region_id=self.region, network_interface_id=eni_id, ipv_6address_count=count,
            client_token=token)
        body = self.call("AssignIpv6Addresses",
                         lambda: self.ecs.assign_ipv_6addresses(request))
        return list(body["Ipv6Sets"]["Ipv6Address"])

    def unassign_ipv6(self, eni_id: str, ips: list[str]) -> None:
        request = ecs_models.UnassignIpv6AddressesRequest(
            region_id=self.region, network_interface_id=eni_id, ipv_6address=ips)
        self.call("UnassignIpv6Addresses",
                  lambda: self.ecs.unassign_ipv_6addresses(request), done=("InvalidIp",))

    # -- what the node may use --------------------------------------------------------

    def quotas(self, instance_type: str) -> Quotas:
        request = ecs_models.DescribeInstanceTypesRequest(instance_types=[instance_type])
        body = self.call("DescribeInstanceTypes",
                         lambda: self.ecs.describe_instance_types(request))
        rows = body.get("InstanceTypes", {}).get("InstanceType", [])
        if not rows:
            raise CloudCallError("DescribeInstanceTypes", "InvalidInstanceType.NotFound",
                                 f"no instance type {instance_type}")
        row = rows[0]
        return Quotas(int(row["EniQuantity"]), int(row["EniPrivateIpAddressQuantity"]),
                      int(row.get("EniIpv6AddressQuantity", 0)))

    def vswitches(self, ids: list[str]) -> list[VSwitchInfo]:
        request = vpc_models.DescribeVSwitchesRequest(region_id=self.region,
                                                      v_switch_id=",".join(ids))
        body = self.call("DescribeVSwitches", lambda: self.vpc.describe_vswitches(request))
        return [VSwitchInfo(v["VSwitchId"], v["ZoneId"], v["CidrBlock"],
                            int(v["AvailableIpAddressCount"]))
                for v in body.get("VSwitches", {}).get("VSwitch", [])]


def _as_call_error(action: str, e: Exception) -> CloudCallError:
    if isinstance(e, TeaException) and getattr(e, "code", None) not in (None, "None"):
        status = getattr(e, "status_code", None) or getattr(e, "statusCode", None)
        return CloudCallError(action, str(e.code), str(getattr(e, "message", e)),
                              int(status) if status else None)
    return CloudCallError(action, "Network", str(e))


def _retry_after(e: Exception) -> float:
    """Seconds the server asked us to wait (`x-acs-retry-after` is in milliseconds)."""
    value = getattr(e, "retry_after", None)
    try:
        return float(value) / 1000 if value else 0.0
    except (TypeError, ValueError):
        return 0.0
