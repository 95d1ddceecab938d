"""What the pool's phases share, and the two locks that guard it.

`lock` guards the store and the fields here and is held for milliseconds; `fill` is held
by the one thread at a time that mutates the cloud (the filler, maintenance, reconcile),
for as long as its calls take. A thread takes `lock` inside `fill`, never the reverse.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from podlab.cni.cloudapi import CloudApi, CloudCallError, EniInfo, VSwitchInfo
from podlab.cni.config import AgentConfig
from podlab.cni.crashpoints import CrashHook, never
from podlab.cni.pool.model import BLOCK_AFTER_CAPACITY, CapacityError, NodeFacts
from podlab.cni.store import EniRow, EniStatus, Intent, IpRow, IpState, Store

T = TypeVar("T")
U = TypeVar("U")
Events = Callable[..., None]


class PoolState:
    """The pool's collaborators and fields, shared by its phase modules."""

    def __init__(self, config: AgentConfig, cloud: CloudApi, store: Store, node: NodeFacts, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 crash: CrashHook = never, events: Events | None = None,
                 workers: int = 4, seed: int | None = None,
                 gateways: Callable[[str], str | None]) -> None:
        """`gateways`: an attached ENI's gateway by its MAC, from metadata; None while
        metadata does not show the ENI yet."""
        self.config, self.cloud, self.store, self.node = config, cloud, store, node
        self.gateways = gateways
        self.clock, self.sleep, self.crash = clock, sleep, crash
        self.events: Events = events or (lambda event, **fields: None)
        self.workers = workers
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.fill = threading.Lock()
        # allocation: pods waiting, finished fills (waiters compare it), the last failure
        self.demand = 0
        self.generation = 0
        self.failure: tuple[int, Exception] | None = None
        # growth: a capacity answer allocs repeat until then, vSwitches skipped until when
        self.blocked: tuple[float, CapacityError] | None = None
        self.cooling: dict[str, float] = {}
        self.vswitches: dict[str, VSwitchInfo] = {}
        self.attach_estimate = 0.0  # seconds the last attach took to reach InUse

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

    def idle(self) -> list[IpRow]:
        """Addresses a pod can take now: on attached ENIs of this node's mode, and not
        still in the netns of a pod that lost it (the cloud may hand it to us again)."""
        ready = {e.id for e in self.store.enis()
                 if e.status == EniStatus.READY and e.exclusive == self.exclusive}
        lost = {r.address for r in self.store.lost()}
        return [r for r in self.store.ips(IpState.IDLE) if r.eni_id in ready and
                r.address not in lost and (not self.config.dual_stack or r.ipv6 is not None)]

    # -- limits -----------------------------------------------------------------------

    def check_blocked(self) -> None:
        if self.blocked and self.blocked[0] > self.clock():
            raise self.blocked[1]

    def refuse(self, message: str) -> NoReturn:
        """Fail with a capacity error, and fail fast with it for a while."""
        error = CapacityError(message)
        with self.lock:
            self.blocked = (self.clock() + BLOCK_AFTER_CAPACITY, error)
        raise error

    def cool(self, vswitch: str, error: CloudCallError) -> None:
        self.cooling[vswitch] = self.clock() + self.config.vswitch_cooldown
        self.events("vswitch_cooling", vswitch=vswitch, code=error.code,
                    seconds=self.config.vswitch_cooldown)

    def is_cooling(self, vswitch: str) -> bool:
        return self.cooling.get(vswitch, 0) > self.clock()

    # -- records ----------------------------------------------------------------------

    def vswitch(self, vswitch_id: str) -> VSwitchInfo:
        if vswitch_id not in self.vswitches:
            self.vswitches.update({v.id: v for v in self.cloud.vswitches([vswitch_id])})
        return self.vswitches[vswitch_id]

    def ready(self, eni_id: str, mac: str) -> bool:
        """Mark an ENI the API shows InUse here ready, once metadata shows it too (it
        lags the API) and so gives its gateway; False while it does not. Takes the lock:
        call it without, since it asks metadata first."""
        gateway = self.gateways(mac)
        if gateway is None:
            return False
        with self.lock, self.store.tx():
            self.store.set_eni_ready(eni_id, gateway)
        return True

    def record_eni(self, eni: EniInfo, exclusive: bool,
                   status: EniStatus = EniStatus.ATTACHING) -> None:
        """Under the lock, in a transaction: an ENI of ours and its addresses (its
        vSwitch looked up before, as no cloud call belongs inside a transaction)."""
        self.store.put_eni(EniRow(eni.id, eni.mac, eni.vswitch_id,
                                  self.vswitches[eni.vswitch_id].cidr, eni.primary_ip,
                                  status, exclusive))
        self.store.add_ips(eni.id, eni.ips, self.clock())

    # -- the intent bracket -----------------------------------------------------------

    def mutate(self, action: str, eni_id: str | None, payload: dict[str, Any],
               call: Callable[[str], T], commit: Callable[[T], None], *,
               replay: Intent | None = None) -> T:
        """Intent on disk, cloud call, then result and intent removal in one commit. A
        `replay` (a crash's roll-forward) is that intent found on disk: its ClientToken
        makes the cloud answer with what the first call made."""
        if replay is None:
            token = uuid.uuid4().hex
            with self.lock, self.store.tx():
                intent = self.store.add_intent(action, eni_id, token, payload, self.clock())
        else:
            token, intent = replay.token, replay.id
        self.crash("intent-written")
        result = call(token)
        self.crash("cloud-answered")
        with self.lock, self.store.tx():
            commit(result)
            self.store.finish_intent(intent)
        return result

    # -- threads ----------------------------------------------------------------------

    @contextmanager
    def filling(self) -> Iterator[None]:
        """Hold the filler's lock (one cloud mutator at a time); wake waiters after."""
        with self.fill:
            yield
        with self.lock:
            self.cond.notify_all()

    def wait_for_fill(self, seconds: float) -> None:
        """Block while a filler works (it wakes us when done), at most `seconds`."""
        with self.lock:
            if self.fill.locked():
                self.cond.wait(seconds)

    def in_parallel(self, do: Callable[[U], T], items: list[U]) -> list[T]:
        if self.workers <= 1 or len(items) <= 1:
            return [do(item) for item in items]
        with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(do, items))
