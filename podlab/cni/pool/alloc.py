"""Allocation: a pod takes an idle address under the lock, or joins the demand and waits
while one thread at a time (the filler) grows the pool for every waiting pod."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from podlab.cni.pool import grow
from podlab.cni.pool.model import BusyError, CapacityError, Lease, PodRef
from podlab.cni.pool.poll import poll_until
from podlab.cni.pool.state import PoolState
from podlab.cni.store import IpRow, IpState, LostRow

FILL_WAIT = 0.5  # seconds a waiter sleeps on the filler before it looks again anyway


def alloc(s: PoolState, ref: PodRef, timeout: float | None = None) -> Lease:
    """The pod's address: the one it holds or had reserved, an idle one, or a new one."""
    budget = timeout if timeout is not None else s.config.alloc_timeout
    deadline = s.clock() + budget
    with s.lock:
        lease = _take(s, ref)
        if lease:
            return lease
        s.demand += 1
    try:
        return poll_until(lambda: _attempt(s, ref), clock=s.clock, wait=s.wait_for_fill,
                          deadline=deadline, pause=FILL_WAIT, longest=FILL_WAIT,
                          timeout=lambda: BusyError(f"no address for {ref.pod} within "
                                                    f"{budget:.0f}s"))
    finally:
        with s.lock:
            s.demand -= 1


def _attempt(s: PoolState, ref: PodRef) -> Lease | None:
    """Fill if no one else is filling; then the pod's lease, the failure of a fill that
    ended since we looked, or None to wait."""
    with s.lock:
        generation = s.generation
    if s.fill.acquire(blocking=False):
        try:
            with s.lock:
                lease = _take(s, ref)
            if lease:
                return lease
            try:
                _run_fill(s)
            except (CapacityError, BusyError):
                with s.lock:  # short of the warm minimum, yet enough for us?
                    lease = _take(s, ref)
                if lease:
                    return lease
                raise
        finally:
            s.fill.release()
            with s.lock:
                s.cond.notify_all()
    with s.lock:
        lease = _take(s, ref)
        if lease:
            return lease
        if s.failure and s.failure[0] > generation:
            raise s.failure[1]
        s.check_blocked()
    return None


def _run_fill(s: PoolState) -> None:
    """Grow for the current demand; a failure is shown to everyone who waited on it. Any
    failure but capacity is a try-again (a metadata timeout while waiting for an attach
    is no cloud error, and once escaped to the socket's handler)."""
    try:
        s.sleep(s.config.batch_window)  # let a burst's other pods queue up
        grow.grow(s, grow.want(s))
    except Exception as e:
        error = e if isinstance(e, CapacityError) else BusyError(f"{type(e).__name__}: {e}")
        with s.lock:
            s.generation += 1
            s.failure = (s.generation, error)
        raise error from e
    with s.lock:
        s.generation += 1


def _take(s: PoolState, ref: PodRef) -> Lease | None:
    """Under the lock: the pod's lease if one can be had without the cloud."""
    now = s.clock()
    s.store.drop_lost([ref.pod])  # its new sandbox replaces the one the cloud broke
    held = s.store.held_by(ref.pod)
    if held is not None:
        if held.state == IpState.RESERVED or held.container != ref.container:
            s.store.set_ip(held.address, IpState.USED, now, pod=ref.pod,
                           container=ref.container, reserve=ref.reserve or None)
        return _lease(s, ref.pod, held)
    idle = s.idle()
    if not idle:
        return None
    # Pack pods onto the fullest ENI, so emptier ones can drain and be released.
    used = {e: len(s.store.ips(IpState.USED, e)) for e in {r.eni_id for r in idle}}
    row = max(idle, key=lambda r: used[r.eni_id])
    s.store.set_ip(row.address, IpState.USED, now, pod=ref.pod, container=ref.container,
                   reserve=ref.reserve or None)
    return _lease(s, ref.pod, row)


def _lease(s: PoolState, pod: str, row: IpRow) -> Lease:
    eni = s.store.eni(row.eni_id)
    assert eni is not None
    return Lease(pod=pod, ip=row.address, ipv6=row.ipv6, eni_id=eni.id, mac=eni.mac,
                 vswitch_id=eni.vswitch_id, cidr=eni.cidr, gateway=eni.gateway,
                 exclusive=eni.exclusive)


def lease_of(s: PoolState, pod: str) -> Lease | None:
    """The lease a pod holds now, if any."""
    with s.lock:
        held = s.store.held_by(pod)
        return _lease(s, pod, held) if held and held.state == IpState.USED else None


def release(s: PoolState, pod: str, container: str | None = None) -> bool:
    """Give back the pod's address (kept for it if it asked for a reservation). True if
    it held one; releasing an unknown pod succeeds and does nothing."""
    with s.lock:
        if s.store.lost(pod):
            s.store.drop_lost([pod])
            return True
        held = s.store.held_by(pod)
        if held is None or held.state != IpState.USED:
            return False
        if container and held.container and container != held.container:
            return False  # a newer sandbox of the pod holds it now
        now = s.clock()
        with s.store.tx():
            if held.reserve:
                s.store.set_ip(held.address, IpState.RESERVED, now, pod=pod,
                               reserve=held.reserve, reserved_until=now + held.reserve)
            else:
                s.store.set_ip(held.address, IpState.IDLE, now)
        s.blocked = None
        s.cond.notify_all()
        return True


def release_where(s: PoolState, gone: Callable[[IpRow | LostRow], bool]) -> list[str]:
    """Release every pod whose used (or lost) address `gone` picks; the pods."""
    with s.lock:
        rows: list[IpRow | LostRow] = [*s.store.ips(IpState.USED), *s.store.lost()]
        pods = [r.pod for r in rows if r.pod and gone(r)]
    for pod in pods:
        release(s, pod)
        s.events("gc_released", pod=pod)
    return pods


def gc(s: PoolState, live_pods: Iterable[str], leased_before: float | None = None
       ) -> list[str]:
    live = set(live_pods)
    return release_where(s, lambda row: row.pod not in live and (
        leased_before is None or row.since < leased_before))


def gc_containers(s: PoolState, valid: Iterable[str]) -> list[str]:
    keep = set(valid)
    return release_where(s, lambda row: bool(row.container) and row.container not in keep)
