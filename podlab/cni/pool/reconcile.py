"""Reconcile: make the store agree with the cloud after any crash.

A round rolls pending creates and assigns forward with their ClientTokens, then looks at
the cloud once (one snapshot: the ENIs attached to this instance, the ENIs tagged for
it) and settles everything from that: it adopts what the cloud holds, re-attaches an ENI
the cloud detached from under live pods, deletes orphans, and forgets what is gone. A
live pod's address that is gone (Terway #613: its ENI deleted out of band) is kept as
lost, out of the pool, until the pod's sandbox is recreated and lets it go.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from podlab.cni.cloudapi import CloudCallError, EniInfo
from podlab.cni.pool import grow
from podlab.cni.pool.model import NODE_TAG, CapacityError
from podlab.cni.pool.shrink import delete_eni, release_eni
from podlab.cni.pool.state import PoolState
from podlab.cni.store import EniRow, EniStatus, IpRow, IpState

COUNTS = ("adopted_enis", "adopted_ips", "dropped_enis", "dropped_ips", "lost_pods",
          "reattached", "orphans_deleted")
HELD = (IpState.USED, IpState.RESERVED)


@dataclass(frozen=True)
class Snapshot:
    """The cloud as one round sees it."""

    attached: dict[str, EniInfo]  # secondary ENIs attached to this instance
    tagged: dict[str, EniInfo]  # ENIs created for this instance, attached or not

    @classmethod
    def take(cls, s: PoolState) -> Snapshot:
        me = s.node.instance_id
        return cls({e.id: e for e in s.cloud.describe_enis(instance_id=me)
                    if e.type != "Primary"},
                   {e.id: e for e in s.cloud.describe_enis(tags={NODE_TAG: me})})

    def in_use(self, eni_id: str, instance_id: str) -> bool:
        info = self.attached.get(eni_id)
        return info is not None and info.status == "InUse" and info.instance_id == instance_id


def reconcile(s: PoolState) -> dict[str, int]:
    """One round; counts of what changed, for the log."""
    with s.filling():
        counts = dict.fromkeys(COUNTS, 0)
        _roll_forward(s)
        cloud = Snapshot.take(s)
        known = s.store.enis()
        on_node = dict(cloud.attached)  # ENIs whose addresses to sync, as the cloud has them
        for row in known:
            outcome = _settle_eni(s, row, cloud, on_node, counts)
            if outcome:
                counts[outcome] += 1
        known_ids = {row.id for row in known}
        for eni_id, info in cloud.tagged.items():
            if eni_id not in known_ids and info.status == "Available":
                delete_eni(s, eni_id)  # an interrupted create's
                counts["orphans_deleted"] += 1
        for info in cloud.attached.values():
            if info.id not in known_ids:
                s.vswitch(info.vswitch_id)
                with s.lock, s.store.tx():
                    s.record_eni(info, s.exclusive and len(info.ips) == 1)
                counts["adopted_enis"] += 1
        for eni_id, info in on_node.items():
            if s.store.eni(eni_id) is not None:
                adopted, dropped, lost = _sync_addresses(s, eni_id, info)
                counts["adopted_ips"] += adopted
                counts["dropped_ips"] += dropped
                counts["lost_pods"] += lost
        _settle_attaching(s, cloud)
        s.events("reconciled", **counts)
        return counts


def _roll_forward(s: PoolState) -> None:
    """Finish what a crash interrupted: replay creates and assigns through growth's own
    paths with their intents' tokens, so the cloud answers with what the first call made;
    drop the other intents (the comparison with the cloud settles them)."""
    for intent in s.store.intents():
        try:
            if intent.action == "create":
                p = intent.payload
                grow.create_eni(s, p["vswitch"], p["count"], exclusive=bool(p.get("exclusive")),
                                replay=intent)
            elif intent.action == "assign" and intent.eni_id:
                grow.assign(s, intent.eni_id, intent.payload["count"], replay=intent)
        except (CloudCallError, CapacityError) as e:
            s.events("intent_dropped", action=intent.action, error=str(e))
        with s.lock, s.store.tx():  # a replay that went through has finished it already
            s.store.finish_intent(intent.id)


def _settle_eni(s: PoolState, row: EniRow, cloud: Snapshot, on_node: dict[str, EniInfo],
                counts: dict[str, int]) -> str | None:
    """Settle one ENI the store knows; what happened, as a count's name."""
    if row.id in cloud.attached:
        if row.status == EniStatus.DETACHING:
            release_eni(s, row)
        return None
    info = cloud.tagged.get(row.id)
    if info is None:
        lost = _forget_eni(s, row.id)
        counts["lost_pods"] += lost
        s.events("eni_gone", eni=row.id, lost_pods=lost)
        return "dropped_enis"
    if info.status != "Available":
        return None  # detaching: settled on the next round
    if row.status != EniStatus.DETACHING and any(r.state in HELD
                                                 for r in s.store.ips(eni_id=row.id)):
        on_node[row.id] = _trim_for_attach(s, row, info)
        grow.attach(s, row.id)  # the cloud detached it from under live pods
        with s.lock, s.store.tx():
            s.store.set_eni_status(row.id, EniStatus.ATTACHING)
        return "reattached"
    delete_eni(s, row.id)
    return "orphans_deleted"


def _settle_attaching(s: PoolState, cloud: Snapshot) -> None:
    """ENIs the snapshot shows InUse here are ready; wait for the others."""
    with s.lock:
        attaching = [row for row in s.store.enis() if row.status == EniStatus.ATTACHING]
    waiting = [row.id for row in attaching
               if not (cloud.in_use(row.id, s.node.instance_id) and s.ready(row.id, row.mac))]
    if waiting:
        grow.wait_attached(s, waiting)
    if s.config.dual_stack:
        grow.pair_ipv6(s)


def _trim_for_attach(s: PoolState, row: EniRow, cloud: EniInfo) -> EniInfo:
    """A detached ENI may hold more addresses than an attached one may (10 against the
    type's quota): unassign spare ones so it can be attached again; what it holds then."""
    extra = len(cloud.ips) - s.per_eni
    if extra <= 0:
        return cloud
    rows = {r.address: r for r in s.store.ips(eni_id=row.id)}
    spare = [a for a in cloud.ips if a != cloud.primary_ip
             and (a not in rows or rows[a].state in (IpState.IDLE, IpState.RELEASING))][:extra]
    s.mutate("unassign", row.id, {"ips": spare},
             lambda _: s.cloud.unassign_ips(row.id, spare),
             lambda _: s.store.drop_ips(spare))
    return replace(cloud, ips=[a for a in cloud.ips if a not in spare])


def _forget_eni(s: PoolState, eni_id: str) -> int:
    with s.lock, s.store.tx():
        lost = _lose(s, s.store.ips(eni_id=eni_id), eni_id)
        s.store.drop_eni(eni_id)
    return lost


def _lose(s: PoolState, gone: list[IpRow], eni_id: str) -> int:
    """Addresses the cloud no longer has: a live pod's is kept as lost (it is still in the
    pod's netns, so it must not be handed out again) until its sandbox is recreated; the
    others are dropped. How many pods lost theirs."""
    lost = [r for r in gone if r.state == IpState.USED]
    for row in lost:
        s.events("pod_lost_address", pod=row.pod, ip=row.address, eni=eni_id)
    s.store.lose(lost, s.clock())
    s.store.drop_ips([r.address for r in gone if r.state != IpState.USED])
    return len(lost)


def _sync_addresses(s: PoolState, eni_id: str, info: EniInfo) -> tuple[int, int, int]:
    rows = {r.address: r for r in s.store.ips(eni_id=eni_id)}
    cloud = set(info.ips)
    now = s.clock()
    adopted = sorted(cloud - set(rows))
    gone = [r for a, r in rows.items() if a not in cloud]
    with s.lock, s.store.tx():
        s.store.add_ips(eni_id, adopted, now)
        lost = _lose(s, gone, eni_id)
        for row in rows.values():
            if row.state == IpState.RELEASING and row.address in cloud:
                s.store.set_ip(row.address, IpState.IDLE, now)
        if s.config.dual_stack:
            paired = {r.ipv6 for r in s.store.ips(eni_id=eni_id) if r.ipv6}
            spare = [v6 for v6 in info.ipv6 if v6 not in paired]
            for row in s.store.ips(eni_id=eni_id):
                if row.ipv6 is not None and row.ipv6 not in info.ipv6:
                    s.store.pair_ipv6(row.address, None)
            for row in s.store.ips(eni_id=eni_id):
                if row.ipv6 is None and spare:
                    s.store.pair_ipv6(row.address, spare.pop())
    return len(adopted), len(gone), lost
