"""The node's ENI/IP pool: warm addresses for fast pod starts, batched cloud calls behind.

Allocation is two-speed. A pod takes an idle address under a lock and a database commit
(milliseconds). When none is idle, the caller joins the demand and one thread at a time
becomes the filler: it sizes one batch for *every* waiting pod plus the warm minimum,
fills ENIs that have room (≤ 10 IPs per AssignPrivateIpAddresses), then creates and
attaches new ENIs (each born with up to 10) while the instance quota allows. Pods that
queued behind it wake to a stocked pool, so a burst of N pods costs about N/10 calls,
not N.

Every cloud mutation is bracketed by an intent (see store.py) and two crash points, and
`reconcile` makes the store agree with the cloud after any crash: it rolls pending
creates and assigns forward with their ClientTokens, adopts what the cloud holds,
re-attaches an ENI the cloud detached from under live pods, deletes orphans, and forgets
what is gone.
"""

from __future__ import annotations

import ipaddress
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from podlab.cni.cloudapi import CloudApi, CloudCallError, EniInfo, Quotas, VSwitchInfo
from podlab.cni.config import AgentConfig
from podlab.cni.crashpoints import CrashHook, never
from podlab.cni.store import EniRow, IpRow, Store

T = TypeVar("T")
U = TypeVar("U")
NODE_TAG = "podlab.io/node"  # on every ENI an agent creates: the instance it is for
BATCH = 10  # addresses per AssignPrivateIpAddresses, and on a new ENI
UNASSIGN_BATCH = 50
BLOCK_AFTER_CAPACITY = 5.0  # seconds allocs fail fast after a quota or exhaustion answer
Events = Callable[..., None]


class CapacityError(RuntimeError):
    """No address can be had now; the message names the limit that was hit."""


class BusyError(RuntimeError):
    """The pool could not serve in time (cloud slow or failing); try again later."""


@dataclass(frozen=True)
class NodeFacts:
    instance_id: str
    instance_type: str
    zone: str
    primary_vswitch: str
    quotas: Quotas


@dataclass(frozen=True)
class PodRef:
    pod: str  # namespace/name
    container: str = ""
    reserve: float = 0.0  # seconds the address waits for this pod after release


@dataclass(frozen=True)
class Lease:
    """What a pod gets: its address and the ENI and vSwitch it lives on."""

    pod: str
    ip: str
    ipv6: str | None
    eni_id: str
    mac: str
    vswitch_id: str
    cidr: str
    gateway: str
    exclusive: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pool:
    def __init__(self, config: AgentConfig, cloud: CloudApi, store: Store, node: NodeFacts, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 crash: CrashHook = never, events: Events | None = None,
                 workers: int = 4, seed: int | None = None) -> None:
        self.config, self.cloud, self.store, self.node = config, cloud, store, node
        self.clock, self.sleep, self.crash = clock, sleep, crash
        self.events: Events = events or (lambda event, **fields: None)
        self.workers = workers
        self.random = random.Random(seed)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._fill = threading.Lock()
        self._demand = 0
        self._generation = 0  # counts finished fills; waiters compare it
        self._failure: tuple[int, Exception] | None = None
        self._blocked: tuple[float, CapacityError] | None = None
        self._cooling: dict[str, float] = {}  # vSwitch -> until when it is skipped
        self._vswitches: dict[str, VSwitchInfo] = {}
        self._attach_estimate = 0.0  # seconds the last attach took to reach InUse

    # -- sizes ------------------------------------------------------------------------

    @property
    def exclusive(self) -> bool:
        return self.config.eni_mode == "exclusive"

    @property
    def per_eni(self) -> int:
        return 1 if self.exclusive else self.node.quotas.ipv4_per_eni

    @property
    def eni_slots(self) -> int:
        """ENIs this node may have for pods: the quota less the primary ENI."""
        return self.node.quotas.enis - 1

    def _usable(self, row: IpRow) -> bool:
        return not self.config.dual_stack or row.ipv6 is not None

    def idle(self) -> list[IpRow]:
        """Addresses a pod can take now: on attached ENIs of this node's mode."""
        ready = {e.id for e in self.store.enis()
                 if e.status == "ready" and e.exclusive == self.exclusive}
        return [r for r in self.store.ips("idle") if r.eni_id in ready and self._usable(r)]

    # -- allocation -------------------------------------------------------------------

    def alloc(self, ref: PodRef, timeout: float | None = None) -> Lease:
        """The pod's address: the one it holds or had reserved, an idle one, or a new one."""
        started = time.monotonic()
        deadline = started + (timeout if timeout is not None else self.config.alloc_timeout)
        with self._lock:
            lease = self._take(ref)
            if lease:
                return lease
            self._demand += 1
        try:
            while True:
                with self._lock:
                    generation = self._generation
                if self._fill.acquire(blocking=False):
                    try:
                        with self._lock:
                            lease = self._take(ref)
                        if lease:
                            return lease
                        try:
                            self._run_fill()
                        except (CapacityError, BusyError):
                            with self._lock:  # short of the warm minimum, yet enough for us?
                                lease = self._take(ref)
                            if lease:
                                return lease
                            raise
                    finally:
                        self._fill.release()
                        with self._lock:
                            self._cond.notify_all()
                with self._lock:
                    lease = self._take(ref)
                    if lease:
                        return lease
                    if self._failure and self._failure[0] > generation:
                        raise self._failure[1]
                    self._check_blocked()
                    if time.monotonic() > deadline:
                        raise BusyError(f"no address for {ref.pod} within "
                                        f"{deadline - started:.0f}s")
                    if self._fill.locked():
                        self._cond.wait(0.5)
        finally:
            with self._lock:
                self._demand -= 1

    def _run_fill(self) -> None:
        """Grow for the current demand; a failure is shown to everyone who waited on it."""
        try:
            self.sleep(self.config.batch_window)  # let a burst's other pods queue up
            self._grow()
        except (CapacityError, BusyError, CloudCallError) as e:
            error = e if isinstance(e, CapacityError) else BusyError(str(e))
            with self._lock:
                self._generation += 1
                self._failure = (self._generation, error)
            raise error from e
        with self._lock:
            self._generation += 1

    def _check_blocked(self) -> None:
        if self._blocked and self._blocked[0] > self.clock():
            raise self._blocked[1]

    def _take(self, ref: PodRef) -> Lease | None:
        """Under the lock: the pod's lease if one can be had without the cloud."""
        now = self.clock()
        held = self.store.held_by(ref.pod)
        if held is not None:
            if held.state == "reserved" or held.container != ref.container:
                self.store.set_ip(held.address, "used", now, pod=ref.pod,
                                  container=ref.container, reserve=ref.reserve or None)
            return self._lease(ref.pod, held)
        idle = self.idle()
        if not idle:
            return None
        # Pack pods onto the fullest ENI, so emptier ones can drain and be released.
        used = {e: len(self.store.ips("used", e)) for e in {r.eni_id for r in idle}}
        row = max(idle, key=lambda r: used[r.eni_id])
        self.store.set_ip(row.address, "used", now, pod=ref.pod, container=ref.container,
                          reserve=ref.reserve or None)
        return self._lease(ref.pod, row)

    def _lease(self, pod: str, row: IpRow) -> Lease:
        eni = self.store.eni(row.eni_id)
        assert eni is not None
        # Alibaba's gateway: the third address from the end of the vSwitch CIDR.
        gateway = ipaddress.ip_network(eni.cidr).broadcast_address - 2
        return Lease(pod=pod, ip=row.address, ipv6=row.ipv6, eni_id=eni.id, mac=eni.mac,
                     vswitch_id=eni.vswitch_id, cidr=eni.cidr, gateway=str(gateway),
                     exclusive=eni.exclusive)

    def lease_of(self, pod: str) -> Lease | None:
        """The lease a pod holds now, if any."""
        with self._lock:
            held = self.store.held_by(pod)
            return self._lease(pod, held) if held and held.state == "used" else None

    def release(self, pod: str, container: str | None = None) -> bool:
        """Give back the pod's address (kept for it if it asked for a reservation). True
        if it held one; releasing an unknown pod succeeds and does nothing."""
        with self._lock:
            held = self.store.held_by(pod)
            if held is None or held.state != "used":
                return False
            if container and held.container and container != held.container:
                return False  # a newer sandbox of the pod holds it now
            now = self.clock()
            with self.store.tx():
                if held.reserve:
                    self.store.set_ip(held.address, "reserved", now, pod=pod,
                                      reserve=held.reserve,
                                      reserved_until=now + held.reserve)
                else:
                    self.store.set_ip(held.address, "idle", now)
            self._blocked = None
            self._cond.notify_all()
            return True

    def gc(self, live_pods: Iterable[str], leased_before: float | None = None) -> list[str]:
        """Release the addresses of pods that no longer exist; the pods released. With
        `leased_before`, only leases taken before then (the pod list's own time)."""
        live = set(live_pods)
        return self._release_where(lambda row: row.pod not in live and (
            leased_before is None or row.since < leased_before))

    def gc_containers(self, valid: Iterable[str]) -> list[str]:
        """Release addresses held for containers not in `valid` (CNI GC); the pods."""
        keep = set(valid)
        return self._release_where(lambda row: bool(row.container) and
                                   row.container not in keep)

    def _release_where(self, gone: Callable[[IpRow], bool]) -> list[str]:
        with self._lock:
            pods = [r.pod for r in self.store.ips("used") if r.pod and gone(r)]
        for pod in pods:
            self.release(pod)
            self.events("gc_released", pod=pod)
        return pods

    # -- growing ----------------------------------------------------------------------

    def _want(self) -> int:
        """Addresses to add: enough for every waiting pod plus the warm minimum."""
        with self._lock:
            idle = len(self.idle())
            want = self._demand + self.config.min_pool_size - idle
            return max(0, min(want, self._demand + self.config.max_pool_size - idle))

    def _grow(self, need: int | None = None) -> None:
        """Add at least `need` addresses (default: what waiting pods and the minimum
        need). While pods wait, a call asks for a full batch: it costs the same, and a
        burst's next pods are already on their way."""
        need = self._want() if need is None else need
        if need <= 0:
            return
        self._check_blocked()
        if self.config.dual_stack:
            need -= self._pair_ipv6()
        want = need if self.exclusive or not self._demand else max(need, BATCH)
        added = 0 if self.exclusive else self._fill_enis(want)
        if added < need:
            self._add_enis(want - added)

    def _fill_enis(self, want: int) -> int:
        """Assign addresses on attached ENIs with room, the ENIs in parallel and each in
        batches of ≤ 10; how many were added."""
        plan: list[tuple[EniRow, int]] = []
        for eni in self.store.enis():
            if eni.exclusive or eni.status != "ready" or want <= 0 or \
                    self._cooling.get(eni.vswitch_id, 0) > self.clock():
                continue
            take = min(want, self.per_eni - len(self.store.ips(eni_id=eni.id)))
            if take > 0:
                plan.append((eni, take))
                want -= take
        return sum(self._in_parallel(lambda item: self._fill_eni(*item), plan))

    def _fill_eni(self, eni: EniRow, count: int) -> int:
        added = 0
        while added < count:
            try:
                added += len(self._assign(eni, min(BATCH, count - added)))
            except CloudCallError as e:
                if not (e.exhausted or e.quota):
                    raise
                self._cool(eni.vswitch_id, e)
                break
        return added

    def _assign(self, eni: EniRow, count: int) -> list[str]:
        def commit(ips: list[str]) -> None:
            self.store.add_ips(eni.id, ips, self.clock())

        ips = self._mutate("assign", eni.id, {"count": count},
                           lambda token: self.cloud.assign_ips(eni.id, count, token), commit)
        if self.config.dual_stack:
            self._pair_ipv6()
        return ips

    def _pair_ipv6(self) -> int:
        """Give every v4 address that lacks one its v6 partner; how many became usable."""
        paired = 0
        for eni in self.store.enis():
            lonely = [r.address for r in self.store.ips(eni_id=eni.id) if r.ipv6 is None]
            if eni.status != "ready" or not lonely:
                continue

            def commit(v6: list[str], lonely: list[str] = lonely) -> None:
                for v4, address in zip(lonely, v6, strict=False):
                    self.store.pair_ipv6(v4, address)

            got = self._mutate("assign_ipv6", eni.id, {"count": len(lonely)},
                               partial(self.cloud.assign_ipv6, eni.id, len(lonely)), commit)
            paired += len(got)
        return paired

    def _add_enis(self, want: int) -> None:
        with self._lock:
            have = len(self.store.enis())
        slots = self.eni_slots - have
        if slots <= 0:
            self._refuse(f"instance ENI quota: {self.node.instance_type} allows "
                         f"{self.node.quotas.enis} ENIs ({self.eni_slots} for pods) of "
                         f"{self.node.quotas.ipv4_per_eni} IPs each; all are attached and "
                         "full" + ("" if not self.exclusive else " (one pod per ENI)"))
        count = min(slots, math.ceil(want / self.per_eni))
        sizes = [min(BATCH, self.per_eni, want - i * self.per_eni) for i in range(count)]
        created: list[EniInfo] = []
        while not created:  # a vSwitch that answers IpNotEnough cools; the next is tried
            vswitch = self._choose_vswitch()
            made = self._in_parallel(partial(self._create_and_attach, vswitch), sizes)
            created = [e for e in made if e is not None]
        ready = self._wait_attached([e.id for e in created])
        # New ENIs were born with at most 10; top them up to what is still wanted.
        rest = want - sum(len(self.store.ips(eni_id=e)) for e in ready)
        if rest > 0 and not self.exclusive:
            self._fill_enis(rest)

    def _create_and_attach(self, vswitch: str, count: int) -> EniInfo | None:
        tags = {**self.config.eni_tags, NODE_TAG: self.node.instance_id}

        def commit(eni: EniInfo) -> None:
            self._record_eni(eni, self.exclusive)

        try:
            eni = self._mutate("create", None, {"vswitch": vswitch, "count": count,
                                                "exclusive": self.exclusive},
                               lambda token: self.cloud.create_eni(
                                   vswitch, self.config.security_groups, count, tags, token),
                               commit)
        except CloudCallError as e:
            if e.exhausted:
                self._cool(vswitch, e)
                return None
            raise
        self._attach(eni.id)
        return eni

    def _attach(self, eni_id: str) -> None:
        try:
            self._mutate("attach", eni_id, {}, lambda _: self.cloud.attach(
                eni_id, self.node.instance_id), lambda _: None)
        except CloudCallError as e:
            if e.code == "EniPerInstanceLimitExceeded":
                self._refuse(f"instance ENI quota: {self.node.instance_type} allows "
                             f"{self.node.quotas.enis} ENIs ({e.code})")
            raise

    def _trim_for_attach(self, row: EniRow, cloud: EniInfo) -> None:
        """A detached ENI may hold more addresses than an attached one may (10 against
        the type's quota): unassign spare ones so it can be attached again."""
        extra = len(cloud.ips) - self.per_eni
        if extra <= 0:
            return
        rows = {r.address: r for r in self.store.ips(eni_id=row.id)}
        spare = [a for a in cloud.ips if a != cloud.primary_ip
                 and (a not in rows or rows[a].state in ("idle", "releasing"))][:extra]
        self._mutate("unassign", row.id, {"ips": spare},
                     lambda _: self.cloud.unassign_ips(row.id, spare),
                     lambda _: self.store.drop_ips(spare))

    def _wait_attached(self, eni_ids: list[str]) -> list[str]:
        """Poll (one Describe for all of them) until the ENIs are InUse."""
        pending = set(eni_ids)
        started = last_miss = self.clock()
        give_up = started + self.config.attach_timeout
        # First look when the last attach took (a configured guess before any attach).
        first = self._attach_estimate or self.config.attach_first_look
        self.sleep(first)
        pause = max(0.01, first / 4)
        while pending:
            for eni in self.cloud.describe_enis(eni_ids=sorted(pending)):
                if eni.status == "InUse" and eni.instance_id == self.node.instance_id:
                    with self._lock, self.store.tx():
                        self.store.set_eni_status(eni.id, "ready")
                    pending.discard(eni.id)
            if not pending:
                self._attach_estimate = min(5.0, (last_miss + self.clock()) / 2 - started)
                break
            last_miss = self.clock()
            if last_miss > give_up:
                raise BusyError(f"ENIs {sorted(pending)} not attached after "
                                f"{self.config.attach_timeout:.0f}s")
            self.sleep(pause)
            pause = min(pause * 2, 1.0)
        if self.config.dual_stack:
            self._pair_ipv6()
        return eni_ids

    def _choose_vswitch(self) -> str:
        candidates = self.config.vswitches.get(self.node.zone) or [self.node.primary_vswitch]
        now = self.clock()
        usable = [v for v in candidates if self._cooling.get(v, 0) <= now]
        if not usable:
            self._refuse(f"vSwitch exhausted: {', '.join(candidates)} answered IpNotEnough "
                         "and are cooling down")
        infos = {v.id: v for v in self.cloud.vswitches(usable)}
        self._vswitches.update(infos)
        usable = [v for v in usable if v in infos and infos[v].zone == self.node.zone
                  and infos[v].available > 0]
        if not usable:
            self._refuse(f"vSwitch exhausted: no vSwitch of zone {self.node.zone} among "
                         f"{candidates} has free IP addresses")
        if self.config.vswitch_selection_policy == "random":
            return self.random.choice(usable)
        return max(usable, key=lambda v: infos[v].available)

    def _record_eni(self, eni: EniInfo, exclusive: bool) -> None:
        """Under the lock, in a transaction: a new ENI of ours, still attaching."""
        self.store.put_eni(EniRow(eni.id, eni.mac, eni.vswitch_id,
                                  self._vswitches[eni.vswitch_id].cidr, eni.primary_ip,
                                  "attaching", exclusive))
        self.store.add_ips(eni.id, eni.ips, self.clock())

    def _vswitch(self, vswitch_id: str) -> VSwitchInfo:
        if vswitch_id not in self._vswitches:
            self._vswitches.update({v.id: v for v in self.cloud.vswitches([vswitch_id])})
        return self._vswitches[vswitch_id]

    def _cool(self, vswitch: str, error: CloudCallError) -> None:
        self._cooling[vswitch] = self.clock() + self.config.vswitch_cooldown
        self.events("vswitch_cooling", vswitch=vswitch, code=error.code,
                    seconds=self.config.vswitch_cooldown)

    def _refuse(self, message: str) -> None:
        error = CapacityError(message)
        with self._lock:
            self._blocked = (self.clock() + BLOCK_AFTER_CAPACITY, error)
        raise error

    def _in_parallel(self, do: Callable[[U], T], items: list[U]) -> list[T]:
        if self.workers <= 1 or len(items) <= 1:
            return [do(item) for item in items]
        with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(do, items))

    # -- the intent bracket -----------------------------------------------------------

    def _mutate(self, action: str, eni_id: str | None, payload: dict[str, Any],
                call: Callable[[str], T], commit: Callable[[T], None]) -> T:
        """Intent on disk, cloud call, then result and intent removal in one commit."""
        token = uuid.uuid4().hex
        with self._lock, self.store.tx():
            intent = self.store.add_intent(action, eni_id, token, payload, self.clock())
        self.crash("intent-written")
        result = call(token)
        self.crash("cloud-answered")
        with self._lock, self.store.tx():
            commit(result)
            self.store.finish_intent(intent)
        return result

    # -- keeping the pool in shape ----------------------------------------------------

    def maintain(self) -> None:
        """Expire reservations, warm up to the minimum, reclaim above the maximum."""
        with self._filling():
            self._expire_reservations()
            try:
                self._grow(self._want())
            except (CapacityError, BusyError, CloudCallError) as e:
                self.events("warm_up_failed", error=str(e))
            try:
                self._shrink()
            except (BusyError, CloudCallError) as e:  # the next round (or reconcile) redoes it
                self.events("reclaim_failed", error=str(e))

    def warm_up(self) -> None:
        """Right after start: hold `warm_up_size` idle addresses before any pod asks."""
        with self._filling():
            idle = len(self.idle())
            try:
                self._grow(max(0, max(self.config.warm_up_size,
                                      self.config.min_pool_size) - idle))
            except (CapacityError, BusyError, CloudCallError) as e:
                self.events("warm_up_failed", error=str(e))

    def _expire_reservations(self) -> None:
        now = self.clock()
        with self._lock, self.store.tx():
            for row in self.store.ips("reserved"):
                if row.reserved_until is not None and row.reserved_until <= now:
                    self.store.set_ip(row.address, "idle", now)
                    self.events("reservation_expired", pod=row.pod, ip=row.address)

    def _excess(self) -> list[IpRow]:
        """Idle addresses to give back: above max, or idle too long above min."""
        idle = self.idle()
        excess = len(idle) - self.config.max_pool_size
        after = self.config.idle_ip_reclaim_after
        if after > 0:
            old = sum(1 for r in idle if r.since + after <= self.clock())
            excess = max(excess, min(old, len(idle) - self.config.min_pool_size))
        if excess <= 0:
            return []
        enis = {e.id: e for e in self.store.enis()}
        busy = {e: len([r for r in self.store.ips(eni_id=e) if r.state != "idle"])
                for e in enis}
        # Drain the emptiest ENIs first, so whole ENIs can go; an ENI's primary address
        # last, as it can only go with its ENI.
        idle.sort(key=lambda r: (busy[r.eni_id], r.eni_id, r.address == enis[r.eni_id].primary_ip,
                                 r.since))
        return idle[:excess]

    def _shrink(self) -> None:
        excess = self._excess()
        by_eni: dict[str, list[str]] = {}
        for row in excess:
            by_eni.setdefault(row.eni_id, []).append(row.address)
        for eni_id, addresses in by_eni.items():
            eni = self.store.eni(eni_id)
            assert eni is not None
            rows = self.store.ips(eni_id=eni_id)
            if len(addresses) == len(rows):
                self._release_eni(eni)
                continue
            secondary = [a for a in addresses if a != eni.primary_ip]
            for i in range(0, len(secondary), UNASSIGN_BATCH):
                self._unassign(eni, secondary[i:i + UNASSIGN_BATCH])

    def _unassign(self, eni: EniRow, addresses: list[str]) -> None:
        v6 = [r.ipv6 for r in map(self.store.ip, addresses) if r and r.ipv6]
        with self._lock, self.store.tx():
            for a in addresses:
                self.store.set_ip(a, "releasing", self.clock())

        def call(_: str) -> None:
            self.cloud.unassign_ips(eni.id, addresses)
            if v6:
                self.cloud.unassign_ipv6(eni.id, v6)

        self._mutate("unassign", eni.id, {"ips": addresses}, call,
                     lambda _: self.store.drop_ips(addresses))
        self.events("ips_released", eni=eni.id, ips=addresses)

    def _release_eni(self, eni: EniRow) -> None:
        """Detach an ENI no pod uses, wait for it to be Available, delete it."""
        with self._lock, self.store.tx():
            self.store.set_eni_status(eni.id, "detaching")
            for row in self.store.ips(eni_id=eni.id):
                self.store.set_ip(row.address, "releasing", self.clock())

        self._mutate("detach", eni.id, {},
                     lambda _: self.cloud.detach(eni.id, self.node.instance_id),
                     lambda _: None)
        self._delete_when_available(eni.id)

    def _delete_when_available(self, eni_id: str) -> None:
        give_up = self.clock() + self.config.attach_timeout
        pause = 0.05
        while True:
            found = self.cloud.describe_enis(eni_ids=[eni_id])
            if not found or found[0].status == "Available":
                break
            if self.clock() > give_up:
                raise BusyError(f"ENI {eni_id} still {found[0].status} after "
                                f"{self.config.attach_timeout:.0f}s")
            self.sleep(pause)
            pause = min(pause * 2, 1.0)

        self._mutate("delete", eni_id, {}, lambda _: self.cloud.delete_eni(eni_id),
                     lambda _: self.store.drop_eni(eni_id))
        self.events("eni_deleted", eni=eni_id)

    # -- reconciling with the cloud ---------------------------------------------------

    def reconcile(self) -> dict[str, int]:
        """Make the store agree with the cloud; counts of what changed, for the log."""
        with self._filling():
            counts = dict.fromkeys(("adopted_enis", "adopted_ips", "dropped_enis",
                                    "dropped_ips", "lost_pods", "reattached",
                                    "orphans_deleted"), 0)
            self._roll_forward()
            me = self.node.instance_id
            attached = {e.id for e in self.cloud.describe_enis(instance_id=me)
                        if e.type != "Primary"}
            mine = {e.id: e for e in self.cloud.describe_enis(tags={NODE_TAG: me})}
            for row in self.store.enis():
                outcome = self._reconcile_eni(row, row.id in attached, mine.get(row.id))
                if outcome:
                    counts[outcome] += 1
            for eni_id, cloud in mine.items():
                if self.store.eni(eni_id) is None and cloud.status == "Available":
                    self._mutate("delete", eni_id, {},
                                 partial(_ignore_token, self.cloud.delete_eni, eni_id),
                                 lambda _: None)
                    counts["orphans_deleted"] += 1
            for info in self.cloud.describe_enis(instance_id=me):
                if info.type != "Primary" and self.store.eni(info.id) is None:
                    self._vswitch(info.vswitch_id)
                    with self._lock, self.store.tx():
                        self._record_eni(info, self.exclusive and len(info.ips) == 1)
                    counts["adopted_enis"] += 1
            waiting = [e.id for e in self.store.enis() if e.status == "attaching"]
            if waiting:
                self._wait_attached(waiting)
            for info in self.cloud.describe_enis(instance_id=me):
                if info.type == "Primary" or self.store.eni(info.id) is None:
                    continue
                adopted, dropped, lost = self._sync_addresses(info.id, info)
                counts["adopted_ips"] += adopted
                counts["dropped_ips"] += dropped
                counts["lost_pods"] += lost
            self.events("reconciled", **counts)
            return counts

    def _reconcile_eni(self, row: EniRow, attached: bool, cloud: EniInfo | None) -> str | None:
        """Settle one ENI the store knows; what happened, as a count's name."""
        if attached:
            if row.status == "detaching":
                self._release_eni(row)
            return None
        if cloud is None:
            lost = self._forget_eni(row.id)
            self.events("eni_gone", eni=row.id, lost_pods=lost)
            return "dropped_enis"
        if cloud.status != "Available":
            return None  # detaching: settled on the next round
        if row.status != "detaching" and any(r.state in ("used", "reserved")
                                             for r in self.store.ips(eni_id=row.id)):
            self._trim_for_attach(row, cloud)
            self._attach(row.id)  # the cloud detached it from under live pods
            with self._lock, self.store.tx():
                self.store.set_eni_status(row.id, "attaching")
            return "reattached"
        self._delete_when_available(row.id)
        return "orphans_deleted"

    @contextmanager
    def _filling(self) -> Iterator[None]:
        """Hold the filler's lock (one cloud mutator at a time); wake waiters after."""
        with self._fill:
            yield
        with self._lock:
            self._cond.notify_all()

    def _roll_forward(self) -> None:
        """Finish what a crash interrupted: replay creates and assigns with their tokens,
        so the cloud answers with what the first call made; drop the other intents (the
        comparison with the cloud settles them)."""
        for intent in self.store.intents():
            try:
                if intent.action == "create":
                    p = intent.payload
                    tags = {**self.config.eni_tags, NODE_TAG: self.node.instance_id}
                    self._vswitch(p["vswitch"])
                    eni = self.cloud.create_eni(p["vswitch"], self.config.security_groups,
                                                p["count"], tags, intent.token)
                    with self._lock, self.store.tx():
                        self._record_eni(eni, bool(p.get("exclusive")))
                    if eni.status == "Available" and not eni.instance_id:
                        self._attach(eni.id)
                elif intent.action == "assign" and intent.eni_id:
                    ips = self.cloud.assign_ips(intent.eni_id, intent.payload["count"],
                                                intent.token)
                    with self._lock, self.store.tx():
                        self.store.add_ips(intent.eni_id, ips, self.clock())
            except (CloudCallError, CapacityError) as e:
                self.events("intent_dropped", action=intent.action, error=str(e))
            with self._lock, self.store.tx():
                self.store.finish_intent(intent.id)

    def _forget_eni(self, eni_id: str) -> int:
        lost = [r for r in self.store.ips(eni_id=eni_id) if r.state in ("used", "reserved")]
        for row in lost:
            self.events("pod_lost_address", pod=row.pod, ip=row.address, eni=eni_id)
        with self._lock:
            self.store.drop_eni(eni_id)
        return len(lost)

    def _sync_addresses(self, eni_id: str, info: EniInfo) -> tuple[int, int, int]:
        rows = {r.address: r for r in self.store.ips(eni_id=eni_id)}
        cloud = set(info.ips)
        now = self.clock()
        adopted = sorted(cloud - set(rows))
        gone = [r for a, r in rows.items() if a not in cloud]
        lost = [r for r in gone if r.state in ("used", "reserved")]
        for row in lost:
            self.events("pod_lost_address", pod=row.pod, ip=row.address, eni=eni_id)
        with self._lock, self.store.tx():
            self.store.add_ips(eni_id, adopted, now)
            self.store.drop_ips([r.address for r in gone])
            for row in rows.values():
                if row.state == "releasing" and row.address in cloud:
                    self.store.set_ip(row.address, "idle", now)
            if self.config.dual_stack:
                paired = {r.ipv6 for r in self.store.ips(eni_id=eni_id) if r.ipv6}
                spare = [v6 for v6 in info.ipv6 if v6 not in paired]
                for row in self.store.ips(eni_id=eni_id):
                    if row.ipv6 is not None and row.ipv6 not in info.ipv6:
                        self.store.pair_ipv6(row.address, None)
                for row in self.store.ips(eni_id=eni_id):
                    if row.ipv6 is None and spare:
                        self.store.pair_ipv6(row.address, spare.pop())
        return len(adopted), len(gone), len(lost)

    # -- what it holds ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        with self._lock:
            enis = self.store.enis()
            return {
                "instance_id": self.node.instance_id,
                "mode": self.config.eni_mode,
                "quotas": self.node.quotas.__dict__,
                # pods this node can hold: every ENI but the primary, full
                "capacity": (self.node.quotas.enis - 1) * self.per_eni,
                "enis": [{**e.__dict__, "ips": [r.__dict__ for r in
                                                self.store.ips(eni_id=e.id)]} for e in enis],
                "idle": len(self.idle()),
                "used": len(self.store.ips("used")),
                "reserved": len(self.store.ips("reserved")),
                "demand": self._demand,
            }



def _ignore_token(call: Callable[[str], None], eni_id: str, _token: str) -> None:
    """For a mutation the API takes no ClientToken for, bound to a loop variable."""
    call(eni_id)
