"""Services as map entries, written so that no connection ever sees half a backend set.

A service port (ClusterIP, port, protocol) is one entry of lb_services naming an id, a
revision and a count; its backends are lb_backends[(id, revision, 0..count-1)]. An update
writes the new set under the next revision, then flips the service entry in one map update,
then deletes the old revision: a packet reads either the old set or the new one.

lb_members lists each live backend of an id: ClientIP affinity trusts a remembered backend
only while it is there, so a removed backend is never chosen again, even by affinity.

The maps are the state: a new ServiceMaps (a restarted agent) reads them back, and
removes what a crash mid-update left behind (slots of a revision never flipped to).
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from podlab.datapath.bpf.maps import Map, MapFull
from podlab.datapath.bpf.schemas import (
    PROTOCOL_NAMES,
    PROTOCOLS,
    BackendKey,
    BackendValue,
    MemberKey,
    SvcKey,
    SvcValue,
    pack_ip,
    pack_port,
    unpack_ip,
    unpack_port,
)

MAX_BACKENDS = 0xFFFF  # svc_value.count is a u16


@dataclass(frozen=True, order=True)
class Backend:
    """A ready endpoint, its targetPort resolved (named ports are the caller's to resolve)."""

    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "tcp"  # "tcp" | "udp"
    backends: tuple[Backend, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Service:
    """A ClusterIP Service; `affinity_timeout` > 0 is sessionAffinity ClientIP, in seconds."""

    cluster_ip: str
    ports: tuple[ServicePort, ...]
    affinity_timeout: int = 0
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True, order=True)
class Frontend:
    """What a packet is matched on: the ClusterIP, the port and the protocol."""

    cluster_ip: str
    port: int
    protocol: str


@dataclass(frozen=True)
class Programmed:
    """A frontend as the maps hold it."""

    id: int
    rev: int
    backends: tuple[Backend, ...]
    affinity_timeout: int


@dataclass
class SyncStats:
    """What a sync wrote: the agent's metrics."""

    written: int = 0   # frontends added or changed
    removed: int = 0   # frontends deleted
    unchanged: int = 0
    entries: dict[str, int] = field(default_factory=dict)  # map -> entries after the sync


def _svc_key(f: Frontend) -> SvcKey:
    return SvcKey(vip=pack_ip(f.cluster_ip), port=pack_port(f.port), proto=PROTOCOLS[f.protocol])


def _member_key(id_: int, b: Backend) -> MemberKey:
    return MemberKey(id=id_, ip=pack_ip(b.ip), port=pack_port(b.port))


def _backend_key(id_: int, rev: int, index: int) -> BackendKey:
    return BackendKey(id=id_, rev=rev, index=index)


Wanted = dict[Frontend, tuple[tuple[Backend, ...], int]]


def frontends(services: Iterable[Service]) -> Wanted:
    """Each frontend's backends and affinity; a frontend twice is a ValueError."""
    wanted: Wanted = {}
    for svc in services:
        for sp in svc.ports:
            if sp.protocol not in PROTOCOLS:
                raise ValueError(f"{svc.namespace}/{svc.name}: protocol {sp.protocol!r}: "
                                 f"one of {sorted(PROTOCOLS)}")
            if len(sp.backends) > MAX_BACKENDS:
                raise ValueError(f"{svc.namespace}/{svc.name}:{sp.port}: more than "
                                 f"{MAX_BACKENDS} backends")
            f = Frontend(svc.cluster_ip, sp.port, sp.protocol)
            if f in wanted:
                raise ValueError(f"{f.cluster_ip}:{f.port}/{f.protocol} is given twice")
            # Duplicates would weigh a backend twice; order is irrelevant to the picks.
            wanted[f] = (tuple(sorted(set(sp.backends))), svc.affinity_timeout)
    return wanted


def _programmed(services: Map[SvcKey, SvcValue], backends: Map[BackendKey, BackendValue]
                ) -> dict[Frontend, Programmed]:
    state = {}
    for key, value in services.items():
        f = Frontend(unpack_ip(key.vip), unpack_port(key.port), PROTOCOL_NAMES[key.proto])
        found = []
        for i in range(value.count):
            slot = backends.get(_backend_key(value.id, value.rev, i))
            if slot is not None:
                found.append(Backend(unpack_ip(slot.ip), unpack_port(slot.port)))
        state[f] = Programmed(value.id, value.rev, tuple(found), value.affinity_s)
    return state


def programmed(pin_dir: Path | str) -> dict[Frontend, Programmed]:
    """What the maps hold, read only: for a reader beside the agent (`podlab bpf`), where
    ServiceMaps' read-back would clean up what the agent is in the middle of writing."""
    services = Map.pinned(pin_dir, "lb_services", SvcKey, SvcValue)
    backends = Map.pinned(pin_dir, "lb_backends", BackendKey, BackendValue)
    try:
        return _programmed(services, backends)
    finally:
        services.close()
        backends.close()


class ServiceMaps:
    """The service maps of one node's pin directory, and what they hold."""

    def __init__(self, pin_dir: Path | str) -> None:
        self.services = Map.pinned(pin_dir, "lb_services", SvcKey, SvcValue)
        self.backends = Map.pinned(pin_dir, "lb_backends", BackendKey, BackendValue)
        self.members = Map.pinned(pin_dir, "lb_members", MemberKey, ctypes.c_uint8)
        self.state: dict[Frontend, Programmed] = {}
        self._slots = 0
        self._members = 0
        self._read_back()

    def close(self) -> None:
        for m in (self.services, self.backends, self.members):
            m.close()

    # ---- reading the maps back ----

    def _read_back(self) -> None:
        self.state = _programmed(self.services, self.backends)
        live = {(p.id, p.rev) for p in self.state.values()}
        for bk in list(self.backends.keys()):
            if (bk.id, bk.rev) not in live:
                self.backends.delete(bk)
        members = {(p.id, pack_ip(b.ip), pack_port(b.port))
                   for p in self.state.values() for b in p.backends}
        for mk in list(self.members.keys()):
            if (mk.id, mk.ip, mk.port) not in members:
                self.members.delete(mk)
        for p in self.state.values():
            for b in p.backends:
                self.members.put(_member_key(p.id, b), ctypes.c_uint8(1))
        self._slots = sum(len(p.backends) for p in self.state.values())
        self._members = self._slots

    # ---- writing ----

    def sync(self, services: Iterable[Service]) -> SyncStats:
        """Make the maps hold exactly `services`, writing only what changed. A sync that
        would not fit is refused (MapFull) before anything is written."""
        return self._apply(frontends(services), list(self.state))

    def update(self, cluster_ip: str, service: Service | None) -> SyncStats:
        """Make one ClusterIP's frontends those of `service` (None: remove them), leaving
        every other Service alone: the cost of one watch event, not of all Services."""
        wanted = frontends([service] if service else [])
        if any(f.cluster_ip != cluster_ip for f in wanted):
            raise ValueError(f"update of {cluster_ip} given another ClusterIP")
        return self._apply(wanted, [f for f in self.state if f.cluster_ip == cluster_ip])

    def _apply(self, wanted: Wanted, scope: list[Frontend]) -> SyncStats:
        """Replace the frontends in `scope` (the current ones being redefined) by `wanted`."""
        gone = [f for f in scope if f not in wanted]
        changed = {f: w for f, w in wanted.items()
                   if f not in self.state
                   or (self.state[f].backends, self.state[f].affinity_timeout) != w}
        self._check_capacity(wanted, scope, gone, changed)
        stats = SyncStats(unchanged=len(wanted) - len(changed))
        for f in gone:
            self._remove(f)
            stats.removed += 1
        ids = self._free_ids()
        # Shrinking sets first, so slots freed make room for the growing ones.
        for f, (backends, affinity) in sorted(
                changed.items(),
                key=lambda kv: len(kv[1][0]) - len(self.state[kv[0]].backends)
                if kv[0] in self.state else len(kv[1][0])):
            self._write(f, backends, affinity, ids)
            stats.written += 1
        stats.entries = {"lb_services": len(self.state), "lb_backends": self._slots,
                         "lb_members": self._members}
        return stats

    def _free_ids(self) -> Iterator[int]:
        """Ids not in use, lowest first; a generator, so the set of used ones is made only
        when a new frontend needs one."""
        used = {p.id for p in self.state.values()}
        yield from (i for i in itertools.count(1) if i not in used)

    def _check_capacity(self, wanted: Wanted, scope: list[Frontend], gone: list[Frontend],
                        changed: Wanted) -> None:
        services = len(self.state) - len(scope) + len(wanted)
        if services > self.services.capacity:
            raise MapFull("lb_services", self.services.capacity, services)
        before = self._slots - sum(len(self.state[f].backends) for f in gone)
        final = (self._slots - sum(len(self.state[f].backends) for f in scope)
                 + sum(len(b) for b, _ in wanted.values()))
        # A frontend whose set changes holds its old slots beside its new ones until its
        # flip; shrinking first keeps the running total under max(before, final).
        in_flight = max((len(self.state[f].backends) for f, (b, _) in changed.items()
                         if f in self.state and self.state[f].backends != b), default=0)
        peak = max(before, final) + in_flight
        for m in (self.backends, self.members):
            if peak > m.capacity:
                raise MapFull(m.name, m.capacity, peak)

    def _remove(self, f: Frontend) -> None:
        old = self.state.pop(f)
        self.services.delete(_svc_key(f))
        for i in range(len(old.backends)):
            self.backends.delete(_backend_key(old.id, old.rev, i))
        for b in old.backends:
            self.members.delete(_member_key(old.id, b))
        self._slots -= len(old.backends)
        self._members -= len(old.backends)

    def _write(self, f: Frontend, backends: tuple[Backend, ...], affinity: int,
               ids: Iterator[int]) -> None:
        old = self.state.get(f)
        id_ = old.id if old else next(ids)
        if old is not None and old.backends == backends:
            rev = old.rev  # only the affinity changed: one entry, nothing else
        else:
            rev = (old.rev + 1) & 0xFFFF if old else 0
            self._write_slots(id_, rev, backends)
        before = set(old.backends) if old else set()
        after = set(backends)
        for b in sorted(after - before):
            self.members.put(_member_key(id_, b), ctypes.c_uint8(1))
        # Before the flip: from here on not even affinity picks a removed backend.
        for b in sorted(before - after):
            self.members.delete(_member_key(id_, b))
        self.services.put(_svc_key(f), SvcValue(id=id_, rev=rev, count=len(backends),
                                                affinity_s=affinity))
        if old is not None and rev != old.rev:
            for i in range(len(old.backends)):
                self.backends.delete(_backend_key(id_, old.rev, i))
        self.state[f] = Programmed(id_, rev, backends, affinity)
        self._slots += len(backends) - (len(old.backends) if old else 0)
        self._members += len(after) - len(before)

    def _write_slots(self, id_: int, rev: int, backends: tuple[Backend, ...]) -> None:
        """All of the new revision's slots, or none (a refused write removes its partners)."""
        written = 0
        try:
            for i, b in enumerate(backends):
                self.backends.put(_backend_key(id_, rev, i),
                                  BackendValue(ip=pack_ip(b.ip), port=pack_port(b.port)))
                written += 1
        except Exception:
            for i in range(written):
                self.backends.delete(_backend_key(id_, rev, i))
            raise
