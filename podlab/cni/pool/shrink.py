"""Shrinking: expire reservations, give back idle addresses above the limits, and
detach and delete an ENI left with no address in use."""

from __future__ import annotations

from podlab.cni.pool.model import UNASSIGN_BATCH, BusyError
from podlab.cni.pool.poll import poll_until
from podlab.cni.pool.state import PoolState
from podlab.cni.store import EniRow, EniStatus, IpRow, IpState


def expire_reservations(s: PoolState) -> None:
    now = s.clock()
    with s.lock, s.store.tx():
        for row in s.store.ips(IpState.RESERVED):
            if row.reserved_until is not None and row.reserved_until <= now:
                s.store.set_ip(row.address, IpState.IDLE, now)
                s.events("reservation_expired", pod=row.pod, ip=row.address)


def shrink(s: PoolState) -> None:
    by_eni: dict[str, list[str]] = {}
    for row in _excess(s):
        by_eni.setdefault(row.eni_id, []).append(row.address)
    for eni_id, addresses in by_eni.items():
        eni = s.store.eni(eni_id)
        assert eni is not None
        if len(addresses) == len(s.store.ips(eni_id=eni_id)):
            release_eni(s, eni)
            continue
        secondary = [a for a in addresses if a != eni.primary_ip]
        for i in range(0, len(secondary), UNASSIGN_BATCH):
            _unassign(s, eni, secondary[i:i + UNASSIGN_BATCH])


def _excess(s: PoolState) -> list[IpRow]:
    """Idle addresses to give back: above max, or idle too long above min."""
    idle = s.idle()
    excess = len(idle) - s.config.max_pool_size
    after = s.config.idle_ip_reclaim_after
    if after > 0:
        old = sum(1 for r in idle if r.since + after <= s.clock())
        excess = max(excess, min(old, len(idle) - s.config.min_pool_size))
    if excess <= 0:
        return []
    enis = {e.id: e for e in s.store.enis()}
    busy = {e: len([r for r in s.store.ips(eni_id=e) if r.state != IpState.IDLE])
            for e in enis}
    # Drain the emptiest ENIs first, so whole ENIs can go; an ENI's primary address
    # last, as it can only go with its ENI.
    idle.sort(key=lambda r: (busy[r.eni_id], r.eni_id, r.address == enis[r.eni_id].primary_ip,
                             r.since))
    return idle[:excess]


def _unassign(s: PoolState, eni: EniRow, addresses: list[str]) -> None:
    v6 = [r.ipv6 for r in map(s.store.ip, addresses) if r and r.ipv6]
    with s.lock, s.store.tx():
        for a in addresses:
            s.store.set_ip(a, IpState.RELEASING, s.clock())

    def call(_: str) -> None:
        s.cloud.unassign_ips(eni.id, addresses)
        if v6:
            s.cloud.unassign_ipv6(eni.id, v6)

    s.mutate("unassign", eni.id, {"ips": addresses}, call,
             lambda _: s.store.drop_ips(addresses))
    s.events("ips_released", eni=eni.id, ips=addresses)


def release_eni(s: PoolState, eni: EniRow) -> None:
    """Detach an ENI no pod uses, wait for it to be Available, delete it."""
    with s.lock, s.store.tx():
        s.store.set_eni_status(eni.id, EniStatus.DETACHING)
        for row in s.store.ips(eni_id=eni.id):
            s.store.set_ip(row.address, IpState.RELEASING, s.clock())
    s.mutate("detach", eni.id, {}, lambda _: s.cloud.detach(eni.id, s.node.instance_id),
             lambda _: None)
    delete_when_available(s, eni.id)


def delete_when_available(s: PoolState, eni_id: str) -> None:
    status = ""

    def detached() -> bool | None:
        nonlocal status
        found = s.cloud.describe_enis(eni_ids=[eni_id])
        if not found or found[0].status == "Available":
            return True
        status = found[0].status
        return None

    poll_until(detached, clock=s.clock, wait=s.sleep,
               deadline=s.clock() + s.config.attach_timeout, pause=0.05,
               timeout=lambda: BusyError(f"ENI {eni_id} still {status} after "
                                         f"{s.config.attach_timeout:.0f}s"))
    delete_eni(s, eni_id)


def delete_eni(s: PoolState, eni_id: str) -> None:
    """Delete a detached ENI of ours, and forget it if the store knew it."""
    s.mutate("delete", eni_id, {}, lambda _: s.cloud.delete_eni(eni_id),
             lambda _: s.store.drop_eni(eni_id))
    s.events("eni_deleted", eni=eni_id)
