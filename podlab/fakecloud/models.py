"""The emulated cloud's state and rules: ENIs, their IPs, instances and vSwitches.

All the rules live here (quotas, exhaustion, ENI life cycle, idempotency); transports
only translate requests into these calls. Attach and detach are eventually consistent
like the real API: Attach answers at once with the ENI `Attaching`, and it turns `InUse`
`attach_delay` seconds later (Detach likewise via `Detaching` to `Available`). The fabric
hooks keep the data plane in step: an attached ENI's device and routes exist, and only
those.

Given a state file (`state=`, see `persist`), the model writes each mutation through to it
before releasing its lock, and a model opened on an existing file continues from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import json
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, cast

from podlab.fakecloud import exceptions as err
from podlab.fakecloud.instance_types import INSTANCE_TYPES, InstanceType
from podlab.fakecloud.persist import Row, StateFile
from podlab.fakecloud.topology import (
    SECURITY_GROUP_ID,
    Node,
    Topology,
    TopologyError,
    VSwitch,
    mac_address,
)

T = TypeVar("T")
MAX_IPS_UNATTACHED = 10  # what an ENI may hold before it is attached to an instance


class FabricHooks(Protocol):
    """What the cloud's control plane does to the data plane (the lab implements it)."""

    def plug_eni(self, instance_id: str, eni_id: str, mac: str) -> None: ...

    def unplug_eni(self, instance_id: str, eni_id: str) -> None: ...

    def route_ip(self, ip: str, eni_id: str) -> None: ...

    def unroute_ip(self, ip: str) -> None: ...


@dataclass
class Eni:
    id: str
    vswitch: VSwitch
    mac: str
    primary_ip: str
    type: str  # Primary | Secondary
    status: str  # Available | Attaching | InUse | Detaching
    instance_id: str | None = None
    secondary_ips: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    security_groups: list[str] = field(default_factory=list)
    settles_at: float = 0.0

    @property
    def ips(self) -> list[str]:
        return [self.primary_ip, *self.secondary_ips]

    def row(self) -> Row:
        """The ENI as its state file stores it (the vSwitch by id)."""
        return {"id": self.id, "vswitch": self.vswitch.id, "mac": self.mac,
                "primary_ip": self.primary_ip, "type": self.type, "status": self.status,
                "instance_id": self.instance_id, "secondary_ips": self.secondary_ips,
                "ipv6": self.ipv6, "tags": self.tags, "security_groups": self.security_groups,
                "settles_at": self.settles_at}


def _world(topology: Topology) -> str:
    """What a state file was written for: the topology's world, not its faults."""
    return json.dumps({k: v for k, v in topology.to_dict().items()
                       if k in ("region", "vpc", "vswitches", "nodes")}, sort_keys=True)


def _canonical(request: Hashable) -> str:
    """A ClientToken's request compared by meaning and storable: sets in sorted order."""
    return json.dumps(request, default=sorted)


class Cloud:
    """One region's ECS/VPC state, built from a topology, or continued from the state file
    `state` when that holds one (of the same world); thread-safe.

    `clock` is the system's monotonic clock by default, which runs on across processes, so
    an attach that was settling when a cloud died settles on time in its successor."""

    def __init__(
        self,
        topology: Topology,
        *,
        hooks: FabricHooks | None = None,
        attach_delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        state: str | Path | None = None,
    ) -> None:
        self.topology = topology
        self.hooks = hooks
        self.attach_delay = attach_delay
        self.clock = clock
        self.lock = threading.RLock()
        self.instances: dict[str, Node] = {n.instance_id: n for n in topology.nodes}
        self.vswitches: dict[str, VSwitch] = {v.id: v for v in topology.vswitches}
        self.enis: dict[str, Eni] = {}
        self._used: dict[str, set[str]] = {v.id: set() for v in topology.vswitches}
        self._ipv6_used: set[str] = set()
        self._tokens: dict[tuple[str, str], tuple[str, object]] = {}
        self._next_id = 1
        # the write-through: what the mutation in progress changed, written when it ends
        self.state_file = StateFile(state) if state is not None else None
        self._depth = 0
        self._changed: dict[str, None] = {}  # ENI ids, in the order they changed
        self._new_tokens: list[tuple[str, str]] = []
        saved = self.state_file.load() if self.state_file else None
        if saved is None:
            with self._mutation(fresh=True):
                for node in topology.nodes:
                    self._add(Eni(node.primary_eni_id, node.vswitch, node.mac,
                                  str(node.primary_ip), "Primary", "InUse", node.instance_id,
                                  security_groups=[SECURITY_GROUP_ID]))
            return
        if saved.world != _world(topology):
            raise TopologyError("state", f"the cloud's state file {state} was written for "
                                         f"another world: {saved.world}")
        for row in saved.enis:
            self._add(Eni(**{**row, "vswitch": self.vswitch(row["vswitch"])}))
        self._changed.clear()  # as the file has them
        self._tokens = dict(saved.tokens)
        self._next_id = saved.next_id

    def fresh(self) -> Cloud:
        """A new world from the same topology, on the same state file, emptied."""
        if self.state_file is not None:
            self.state_file.write(next_id=1, clear=True)
            self.state_file.close()
        return Cloud(self.topology, hooks=self.hooks, attach_delay=self.attach_delay,
                     clock=self.clock, state=self.state_file.path if self.state_file else None)

    def close(self) -> None:
        """Release the state file (the model in memory stays readable)."""
        if self.state_file is not None:
            self.state_file.close()

    def _add(self, eni: Eni) -> None:
        self.enis[eni.id] = eni
        self._used[eni.vswitch.id].update(eni.ips)
        self._ipv6_used.update(eni.ipv6)
        self._changed[eni.id] = None

    @contextlib.contextmanager
    def _mutation(self, *, fresh: bool = False) -> Iterator[None]:
        """Hold the lock; when the outermost mutation ends, even by an error (what it
        changed stays changed), write what it changed to the state file in one
        transaction. `_changed` names the ENIs it touched."""
        with self.lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._flush(fresh)

    def _flush(self, fresh: bool) -> None:
        changed, self._changed = self._changed, {}
        tokens, self._new_tokens = self._new_tokens, []
        if self.state_file is None:
            return
        self.state_file.write(
            world=_world(self.topology) if fresh else None, next_id=self._next_id,
            enis=[self.enis[i].row() for i in changed if i in self.enis],
            deleted=[i for i in changed if i not in self.enis],
            tokens=[(*key, *self._tokens[key]) for key in tokens])

    # -- lookups ----------------------------------------------------------------------

    def eni(self, eni_id: str) -> Eni:
        eni = self.enis.get(eni_id)
        if eni is None:
            raise err.InvalidEniId(f"The specified ENI {eni_id} does not exist.")
        self._settle(eni)
        return eni

    def instance(self, instance_id: str) -> Node:
        node = self.instances.get(instance_id)
        if node is None:
            raise err.InvalidInstanceId(f"The specified instance {instance_id} does not exist.")
        return node

    def vswitch(self, vswitch_id: str) -> VSwitch:
        vsw = self.vswitches.get(vswitch_id)
        if vsw is None:
            raise err.InvalidVSwitchId(f"The specified vSwitch {vswitch_id} does not exist.")
        return vsw

    def instance_type(self, instance_id: str) -> InstanceType:
        return INSTANCE_TYPES[self.instance(instance_id).instance_type]

    def available_ips(self, vswitch_id: str) -> int:
        return self.vswitch(vswitch_id).usable_count - len(self._used[vswitch_id])

    def all_enis(self) -> list[Eni]:
        for eni in self.enis.values():
            self._settle(eni)
        return list(self.enis.values())

    def _settle(self, eni: Eni) -> None:
        """Finish an attach or detach whose time has come."""
        if eni.status in ("Attaching", "Detaching") and self.clock() >= eni.settles_at:
            eni.status = "InUse" if eni.status == "Attaching" else "Available"

    # -- idempotency ------------------------------------------------------------------

    def idempotent(self, action: str, token: str | None, request: Hashable,
                   do: Callable[[], T]) -> T:
        """A ClientToken makes a retried call return the first call's answer; the same
        token with another `request` (the call's meaning, not its encoding) is refused."""
        if token is None:
            return do()
        with self._mutation():
            key, meaning = (action, token), _canonical(request)
            if key not in self._tokens:
                self._tokens[key] = (meaning, do())
                self._new_tokens.append(key)
            first, answer = self._tokens[key]
            if first != meaning:
                raise err.IdempotentParameterMismatch(
                    f"The ClientToken {token!r} was used by a {action} with other parameters.")
            return cast(T, answer)

    # -- addresses --------------------------------------------------------------------

    def _allocate(self, vsw: VSwitch, count: int, explicit: Iterable[str] = ()) -> list[str]:
        used = self._used[vsw.id]
        wanted = list(explicit)
        usable = set(map(str, vsw.usable())) if wanted else set()
        for ip in wanted:
            if ip not in usable:
                raise err.InvalidParameter(f"The specified IP {ip} is not a usable address "
                                           f"of vSwitch {vsw.id} ({vsw.cidr}).")
            if ip in used or wanted.count(ip) > 1:
                raise err.IpInUse(f"The specified IP {ip} is already in use.")
        if count > vsw.usable_count - len(used):
            raise err.IpNotEnough(f"The vSwitch {vsw.id} has {vsw.usable_count - len(used)} "
                                  f"free IP addresses; {count} requested.")
        picked: list[str] = []
        for address in vsw.usable():
            if len(picked) == count:
                break
            if str(address) not in used:
                picked.append(str(address))
        chosen = wanted or picked
        used.update(chosen)
        return chosen

    def ipv6_cidr(self, vsw: VSwitch) -> ipaddress.IPv6Network:
        """Each vSwitch a /64 of a ULA /56 derived from the VPC id."""
        prefix = int(hashlib.sha256(self.topology.vpc_id.encode()).hexdigest()[:10], 16)
        vpc = ipaddress.IPv6Network(((0xFD << 120) | (prefix << 80), 56))
        return list(itertools.islice(vpc.subnets(new_prefix=64), 256))[
            list(self.vswitches).index(vsw.id)]

    # -- ENI life cycle ---------------------------------------------------------------

    def create_eni(self, vswitch_id: str, *, security_groups: list[str],
                   secondary_count: int = 0, explicit: list[str] | None = None,
                   primary_ip: str | None = None, tags: dict[str, str] | None = None) -> Eni:
        with self._mutation():
            vsw = self.vswitch(vswitch_id)
            extra = len(explicit) if explicit else secondary_count
            if 1 + extra > MAX_IPS_UNATTACHED:
                raise err.PrivateIpQuotaExceeded(
                    f"An ENI that is not attached holds at most {MAX_IPS_UNATTACHED} private "
                    f"IP addresses; {1 + extra} requested.")
            primary = self._allocate(vsw, 1, [primary_ip] if primary_ip else ())
            try:
                secondary = self._allocate(vsw, extra, explicit or ())
            except err.CloudError:
                self._used[vsw.id].difference_update(primary)
                raise
            eni_id = "eni-" + hashlib.sha256(
                f"{self.topology.vpc_id}/{self._next_id}".encode()).hexdigest()[:20]
            self._next_id += 1
            eni = Eni(eni_id, vsw, mac_address(eni_id), primary[0], "Secondary", "Available",
                      secondary_ips=secondary, tags=dict(tags or {}),
                      security_groups=list(security_groups))
            self._add(eni)
            return eni

    def delete_eni(self, eni_id: str) -> None:
        with self._mutation():
            eni = self.eni(eni_id)
            if eni.type == "Primary" or eni.status != "Available":
                raise err.InvalidEniState(f"The ENI {eni_id} is {eni.status} ({eni.type}); "
                                          "only an Available secondary ENI can be deleted.")
            self._used[eni.vswitch.id].difference_update(eni.ips)
            self._ipv6_used.difference_update(eni.ipv6)
            del self.enis[eni_id]
            self._changed[eni_id] = None

    def attach_eni(self, eni_id: str, instance_id: str) -> None:
        with self._mutation():
            eni = self.eni(eni_id)
            node = self.instance(instance_id)
            itype = INSTANCE_TYPES[node.instance_type]
            if eni.status != "Available":
                raise err.InvalidEniState(f"The ENI {eni_id} is {eni.status}, not Available.")
            attached = [e for e in self.enis.values() if e.instance_id == instance_id]
            if len(attached) >= itype.eni_quantity:
                raise err.EniPerInstanceLimitExceeded(
                    f"The instance {instance_id} ({itype.id}) has {len(attached)} ENIs; "
                    f"its type allows {itype.eni_quantity}.")
            if len(eni.ips) > itype.eni_private_ip_quantity:
                raise err.Ipv4CountExceeded(
                    f"The ENI {eni_id} holds {len(eni.ips)} IPs; an ENI of {itype.id} allows "
                    f"{itype.eni_private_ip_quantity}.")
            if eni.vswitch.zone != node.zone:
                raise err.InvalidParameter(f"The ENI's vSwitch is in {eni.vswitch.zone}; the "
                                           f"instance {instance_id} is in {node.zone}.")
            self._changed[eni_id] = None
            eni.instance_id = instance_id
            eni.status = "Attaching"
            eni.settles_at = self.clock() + self.attach_delay
            if self.hooks:
                self.hooks.plug_eni(instance_id, eni_id, eni.mac)
                for ip in [*eni.ips, *eni.ipv6]:
                    self.hooks.route_ip(ip, eni_id)
            self._settle(eni)

    def detach_eni(self, eni_id: str, instance_id: str | None = None) -> None:
        with self._mutation():
            eni = self.eni(eni_id)
            if eni.type == "Primary" or eni.status != "InUse":
                raise err.InvalidEniState(f"The ENI {eni_id} is {eni.status} ({eni.type}); "
                                          "only an InUse secondary ENI can be detached.")
            if instance_id and instance_id != eni.instance_id:
                raise err.InvalidParameter(f"The ENI {eni_id} is not attached to "
                                           f"{instance_id}.")
            owner = eni.instance_id
            assert owner is not None
            self._changed[eni_id] = None
            if self.hooks:
                for ip in [*eni.ips, *eni.ipv6]:
                    self.hooks.unroute_ip(ip)
                self.hooks.unplug_eni(owner, eni_id)
            eni.instance_id = None
            eni.status = "Detaching"
            eni.settles_at = self.clock() + self.attach_delay
            self._settle(eni)

    # -- secondary addresses ----------------------------------------------------------

    def _mutable(self, eni_id: str) -> Eni:
        """The ENI an address call changes (marked changed); a settling one is busy."""
        eni = self.eni(eni_id)
        if eni.status in ("Attaching", "Detaching"):
            raise err.OperationConflict(f"The ENI {eni_id} is {eni.status}; another "
                                        "operation on it is in progress.")
        self._changed[eni_id] = None
        return eni

    def _ipv4_quota(self, eni: Eni) -> int:
        if eni.instance_id is None:
            return MAX_IPS_UNATTACHED
        return INSTANCE_TYPES[self.instance(eni.instance_id).instance_type].eni_private_ip_quantity

    def assign_ips(self, eni_id: str, count: int = 0, explicit: list[str] | None = None
                   ) -> list[str]:
        with self._mutation():
            eni = self._mutable(eni_id)
            extra = len(explicit) if explicit else count
            quota = self._ipv4_quota(eni)
            if len(eni.ips) + extra > quota:
                cls = err.Ipv4CountExceeded if eni.instance_id else err.PrivateIpQuotaExceeded
                raise cls(f"The ENI {eni_id} holds {len(eni.ips)} IPs; {extra} more exceed "
                          f"its quota of {quota}.")
            ips = self._allocate(eni.vswitch, extra, explicit or ())
            eni.secondary_ips += ips
            if self.hooks and eni.instance_id:
                for ip in ips:
                    self.hooks.route_ip(ip, eni_id)
            return ips

    def unassign_ips(self, eni_id: str, ips: list[str]) -> None:
        with self._mutation():
            eni = self._mutable(eni_id)
            for ip in ips:
                if ip == eni.primary_ip:
                    raise err.InvalidParameter(f"The primary IP {ip} of {eni_id} cannot be "
                                               "unassigned.")
                if ip not in eni.secondary_ips:
                    raise err.IpUnassigned(f"The IP {ip} is not assigned to {eni_id}.")
            for ip in ips:
                eni.secondary_ips.remove(ip)
                self._used[eni.vswitch.id].discard(ip)
                if self.hooks and eni.instance_id:
                    self.hooks.unroute_ip(ip)

    def assign_ipv6(self, eni_id: str, count: int = 0, explicit: list[str] | None = None
                    ) -> list[str]:
        with self._mutation():
            eni = self._mutable(eni_id)
            extra = len(explicit) if explicit else count
            quota = (INSTANCE_TYPES[self.instance(eni.instance_id).instance_type]
                     .eni_ipv6_quantity if eni.instance_id else MAX_IPS_UNATTACHED)
            if len(eni.ipv6) + extra > quota:
                raise err.Ipv6CountExceeded(f"The ENI {eni_id} holds {len(eni.ipv6)} IPv6 "
                                            f"addresses; {extra} more exceed {quota}.")
            cidr = self.ipv6_cidr(eni.vswitch)
            if explicit:
                for ip in explicit:
                    if ipaddress.IPv6Address(ip) not in cidr or ip in self._ipv6_used:
                        raise err.InvalidParameter(f"The IPv6 address {ip} is not free in "
                                                   f"{cidr}.")
                ips = list(explicit)
            else:
                free = (str(a) for a in itertools.islice(cidr.hosts(), 1, None)
                        if str(a) not in self._ipv6_used)
                ips = list(itertools.islice(free, extra))
            self._ipv6_used.update(ips)
            eni.ipv6 += ips
            if self.hooks and eni.instance_id:
                for ip in ips:
                    self.hooks.route_ip(ip, eni_id)
            return ips

    def unassign_ipv6(self, eni_id: str, ips: list[str]) -> None:
        with self._mutation():
            eni = self._mutable(eni_id)
            missing = [ip for ip in ips if ip not in eni.ipv6]
            if missing:
                raise err.IpUnassigned(f"The IPv6 addresses {missing} are not assigned to "
                                       f"{eni_id}.")
            for ip in ips:
                eni.ipv6.remove(ip)
                self._ipv6_used.discard(ip)
                if self.hooks and eni.instance_id:
                    self.hooks.unroute_ip(ip)
