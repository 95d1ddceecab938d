"""Growth: assign addresses on ENIs with room, then create and attach new ENIs.

`create_eni` and `assign` are also how a crash's pending creates and assigns are rolled
forward (reconcile.py), with the intent's ClientToken: one path for both.
"""

from __future__ import annotations

import math
from functools import partial

from podlab.cni.cloudapi import CloudCallError, EniInfo
from podlab.cni.pool.model import BATCH, NODE_TAG, BusyError
from podlab.cni.pool.poll import poll_until
from podlab.cni.pool.state import PoolState
from podlab.cni.store import EniRow, EniStatus, Intent


def want(s: PoolState) -> int:
    """Addresses to add: enough for every waiting pod plus the warm minimum."""
    with s.lock:
        idle = len(s.idle())
        wanted = s.demand + s.config.min_pool_size - idle
        return max(0, min(wanted, s.demand + s.config.max_pool_size - idle))


def grow(s: PoolState, need: int) -> None:
    """Add at least `need` addresses. While pods wait, a call asks for a full batch: it
    costs the same, and a burst's next pods are already on their way."""
    if need <= 0:
        return
    s.check_blocked()
    if s.config.dual_stack:
        need -= pair_ipv6(s)
    wanted = need if s.exclusive or not s.demand else max(need, BATCH)
    added = 0 if s.exclusive else fill_enis(s, wanted)
    if added < need:
        _add_enis(s, wanted - added)


def fill_enis(s: PoolState, wanted: int) -> int:
    """Assign addresses on attached ENIs with room, the ENIs in parallel and each in
    batches of ≤ 10; how many were added."""
    plan: list[tuple[EniRow, int]] = []
    for eni in s.store.enis():
        if eni.exclusive or eni.status != EniStatus.READY or wanted <= 0 or \
                s.is_cooling(eni.vswitch_id):
            continue
        take = min(wanted, s.per_eni - len(s.store.ips(eni_id=eni.id)))
        if take > 0:
            plan.append((eni, take))
            wanted -= take
    return sum(s.in_parallel(lambda item: _fill_eni(s, *item), plan))


def _fill_eni(s: PoolState, eni: EniRow, count: int) -> int:
    added = 0
    while added < count:
        try:
            added += len(assign(s, eni.id, min(BATCH, count - added)))
        except CloudCallError as e:
            if e.exhausted:  # the vSwitch has no address left: skip it a while
                s.cool(eni.vswitch_id, e)
            elif not e.quota:
                raise
            # A quota answer is this ENI's alone (fuller than the store knew; reconcile
            # counts again): the vSwitch, and its other ENIs, stay in use.
            break
    return added


def assign(s: PoolState, eni_id: str, count: int, replay: Intent | None = None) -> list[str]:
    """`count` new addresses on the ENI, idle (IPv6 partners too, in dual stack)."""
    ips = s.mutate("assign", eni_id, {"count": count},
                   lambda token: s.cloud.assign_ips(eni_id, count, token),
                   lambda ips: s.store.add_ips(eni_id, ips, s.clock()), replay=replay)
    if s.config.dual_stack:
        pair_ipv6(s)
    return ips


def pair_ipv6(s: PoolState) -> int:
    """Give every v4 address that lacks one its v6 partner; how many became usable."""
    paired = 0
    for eni in s.store.enis():
        lonely = [r.address for r in s.store.ips(eni_id=eni.id) if r.ipv6 is None]
        if eni.status != EniStatus.READY or not lonely:
            continue

        def commit(v6: list[str], lonely: list[str] = lonely) -> None:
            for v4, address in zip(lonely, v6, strict=False):
                s.store.pair_ipv6(v4, address)

        got = s.mutate("assign_ipv6", eni.id, {"count": len(lonely)},
                       partial(s.cloud.assign_ipv6, eni.id, len(lonely)), commit)
        paired += len(got)
    return paired


def _add_enis(s: PoolState, wanted: int) -> None:
    with s.lock:
        have = len(s.store.enis())
    slots = s.eni_slots - have
    if slots <= 0:
        s.refuse(f"instance ENI quota: {s.node.instance_type} allows "
                 f"{s.node.quotas.enis} ENIs ({s.eni_slots} for pods) of "
                 f"{s.node.quotas.ipv4_per_eni} IPs each; all are attached and "
                 "full" + ("" if not s.exclusive else " (one pod per ENI)"))
    count = min(slots, math.ceil(wanted / s.per_eni))
    sizes = [min(BATCH, s.per_eni, wanted - i * s.per_eni) for i in range(count)]
    created: list[EniInfo] = []
    while not created:  # a vSwitch that answers IpNotEnough cools; the next is tried
        vswitch = _choose_vswitch(s)
        made = s.in_parallel(partial(create_eni, s, vswitch, exclusive=s.exclusive), sizes)
        created = [e for e in made if e is not None]
    wait_attached(s, [e.id for e in created])
    # New ENIs were born with at most 10; top them up to what is still wanted.
    rest = wanted - sum(len(s.store.ips(eni_id=e.id)) for e in created)
    if rest > 0 and not s.exclusive:
        fill_enis(s, rest)


def create_eni(s: PoolState, vswitch: str, count: int, *, exclusive: bool,
               replay: Intent | None = None) -> EniInfo | None:
    """A new ENI of ours with `count` addresses, recorded and attached; None if the
    vSwitch is exhausted (it cools down). A replayed create whose ENI is attached
    already is only recorded."""
    tags = {**s.config.eni_tags, NODE_TAG: s.node.instance_id}
    s.vswitch(vswitch)  # its CIDR goes into the record
    try:
        eni = s.mutate("create", None, {"vswitch": vswitch, "count": count,
                                        "exclusive": exclusive},
                       lambda token: s.cloud.create_eni(
                           vswitch, s.config.security_groups, count, tags, token),
                       lambda eni: s.record_eni(eni, exclusive), replay=replay)
    except CloudCallError as e:
        if e.exhausted:
            s.cool(vswitch, e)
            return None
        raise
    if not eni.instance_id:
        attach(s, eni.id)
    return eni


def attach(s: PoolState, eni_id: str) -> None:
    try:
        s.mutate("attach", eni_id, {}, lambda _: s.cloud.attach(eni_id, s.node.instance_id),
                 lambda _: None)
    except CloudCallError as e:
        if e.code == "EniPerInstanceLimitExceeded":
            s.refuse(f"instance ENI quota: {s.node.instance_type} allows "
                     f"{s.node.quotas.enis} ENIs ({e.code})")
        raise


def wait_attached(s: PoolState, eni_ids: list[str]) -> None:
    """Poll (one Describe for all of them) until the ENIs are InUse here. The first look
    comes when the last attach took (a configured guess before any attach)."""
    pending = set(eni_ids)
    started = last_miss = s.clock()
    first = s.attach_estimate or s.config.attach_first_look
    s.sleep(first)

    def attached() -> bool | None:
        nonlocal last_miss
        for eni in s.cloud.describe_enis(eni_ids=sorted(pending)):
            if eni.status == "InUse" and eni.instance_id == s.node.instance_id \
                    and s.ready(eni.id, eni.mac):
                pending.discard(eni.id)
        if pending:
            last_miss = s.clock()
            return None
        return True

    poll_until(attached, clock=s.clock, wait=s.sleep, deadline=started + s.config.attach_timeout,
               pause=max(0.01, first / 4), timeout=lambda: BusyError(
                   f"ENIs {sorted(pending)} not attached after {s.config.attach_timeout:.0f}s"))
    s.attach_estimate = min(5.0, (last_miss + s.clock()) / 2 - started)
    if s.config.dual_stack:
        pair_ipv6(s)


def _choose_vswitch(s: PoolState) -> str:
    candidates = s.config.vswitches.get(s.node.zone) or [s.node.primary_vswitch]
    usable = [v for v in candidates if not s.is_cooling(v)]
    if not usable:
        s.refuse(f"vSwitch exhausted: {', '.join(candidates)} answered IpNotEnough "
                 "and are cooling down")
    infos = {v.id: v for v in s.cloud.vswitches(usable)}
    s.vswitches.update(infos)
    usable = [v for v in usable if v in infos and infos[v].zone == s.node.zone
              and infos[v].available > 0]
    if not usable:
        s.refuse(f"vSwitch exhausted: no vSwitch of zone {s.node.zone} among "
                 f"{candidates} has free IP addresses")
    if s.config.vswitch_selection_policy == "random":
        return s.random.choice(usable)
    return max(usable, key=lambda v: infos[v].available)
