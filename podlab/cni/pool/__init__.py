"""The node's ENI/IP pool: warm addresses for fast pod starts, batched cloud calls behind.

Allocation is two-speed. A pod takes an idle address under a lock and a database commit
(milliseconds). When none is idle, the caller joins the demand and one thread at a time
becomes the filler: it sizes one batch for *every* waiting pod plus the warm minimum,
fills ENIs that have room (≤ 10 IPs per AssignPrivateIpAddresses), then creates and
attaches new ENIs (each born with up to 10) while the instance quota allows. Pods that
queued behind it wake to a stocked pool, so a burst of N pods costs about N/10 calls,
not N.

Every cloud mutation is bracketed by an intent (see store.py) and two crash points, and
`reconcile` makes the store agree with the cloud after any crash.

The phases live in their own modules over one shared `PoolState`: alloc.py, grow.py,
shrink.py, reconcile.py; poll.py is the one wait loop, on the injected clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podlab.cni.cloudapi import CloudCallError
from podlab.cni.pool import alloc, grow, reconcile, shrink
from podlab.cni.pool.model import (
    BATCH,
    NODE_TAG,
    BusyError,
    CapacityError,
    Lease,
    NodeFacts,
    PodRef,
)
from podlab.cni.pool.state import PoolState
from podlab.cni.store import EniStatus, IpState

__all__ = ["BATCH", "NODE_TAG", "BusyError", "CapacityError", "EniStatus", "IpState",
           "Lease", "NodeFacts", "PodRef", "Pool"]


class Pool(PoolState):
    """The pool's public face: its state, and each phase's entry point."""

    # -- pods -------------------------------------------------------------------------

    def alloc(self, ref: PodRef, timeout: float | None = None) -> Lease:
        """The pod's address: the one it holds or had reserved, an idle one, or a new one."""
        return alloc.alloc(self, ref, timeout)

    def lease_of(self, pod: str) -> Lease | None:
        return alloc.lease_of(self, pod)

    def release(self, pod: str, container: str | None = None) -> bool:
        """Give back the pod's address; True if it held one."""
        return alloc.release(self, pod, container)

    def gc(self, live_pods: Iterable[str], leased_before: float | None = None) -> list[str]:
        """Release the addresses of pods that no longer exist; the pods released. With
        `leased_before`, only leases taken before then (the pod list's own time)."""
        return alloc.gc(self, live_pods, leased_before)

    def gc_containers(self, valid: Iterable[str]) -> list[str]:
        """Release addresses held for containers not in `valid` (CNI GC); the pods."""
        return alloc.gc_containers(self, valid)

    # -- keeping the pool in shape ----------------------------------------------------

    def maintain(self) -> None:
        """Expire reservations, warm up to the minimum, reclaim above the maximum. A full
        node is no failure; any other failure to grow is raised, for the maintenance loop
        to count and report (a pool that must grow has nothing to reclaim)."""
        with self.filling():
            shrink.expire_reservations(self)
            try:
                grow.grow(self, grow.want(self))
            except CapacityError as e:
                self.events("warm_up_failed", error=str(e))
            try:
                shrink.shrink(self)
            except (BusyError, CloudCallError) as e:  # the next round (or reconcile) redoes it
                self.events("reclaim_failed", error=str(e))

    def warm_up(self) -> None:
        """Right after start: hold `warm_up_size` idle addresses before any pod asks."""
        with self.filling():
            target = max(self.config.warm_up_size, self.config.min_pool_size)
            try:
                grow.grow(self, target - len(self.idle()))
            except (CapacityError, BusyError, CloudCallError) as e:
                self.events("warm_up_failed", error=str(e))

    def attaching(self) -> bool:
        """Whether an ENI is still attaching: left so by a fill that failed, until a
        reconcile settles it."""
        with self.lock:
            return any(e.status == EniStatus.ATTACHING for e in self.store.enis())

    def reconcile(self) -> dict[str, int]:
        """Make the store agree with the cloud; counts of what changed, for the log."""
        return reconcile.reconcile(self)

    def info(self) -> dict[str, Any]:
        with self.lock:
            return {
                "instance_id": self.node.instance_id,
                "mode": self.config.eni_mode,
                "quotas": self.node.quotas.__dict__,
                # pods this node can hold: every ENI but the primary, full
                "capacity": self.eni_slots * self.per_eni,
                "enis": [{**e.__dict__, "ips": [r.__dict__ for r in
                                                self.store.ips(eni_id=e.id)]}
                         for e in self.store.enis()],
                "idle": len(self.idle()),
                "used": len(self.store.ips(IpState.USED)),
                "reserved": len(self.store.ips(IpState.RESERVED)),
                "demand": self.demand,
                # pods whose address the cloud took: their sandboxes need recreating
                "lost": [r.__dict__ for r in self.store.lost()],
            }
