"""The pool's semantics against the in-process fake cloud, through the official SDK."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from podlab.cni.pool import BATCH, BusyError, CapacityError, IpState, PodRef, Pool
from podlab.fakecloud import Topology
from podlab.fakecloud.faults import FaultRule
from podlab.fakecloud.mock import mock
from podlab.fakecloud.wire import Endpoint
from tests.unit.agent.harness import Clock, make_pool, node_of

WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/24"},
                  {"id": "vsw-b", "zone": "z1", "cidr": "10.0.1.0/24"},
                  {"id": "vsw-far", "zone": "z2", "cidr": "10.0.2.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.4xlarge"},
              {"name": "small", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"}],
})


@pytest.fixture
def cloud() -> Iterator[Endpoint]:
    with mock(WORLD) as endpoint:
        yield endpoint


@pytest.fixture
def clock() -> Clock:
    return Clock()


def actions(endpoint: Endpoint) -> Counter[str]:
    return Counter(c.action for c in endpoint.calls)


def mutations(endpoint: Endpoint) -> int:
    return sum(n for a, n in actions(endpoint).items() if not a.startswith("Describe"))


def eventually(condition: Callable[[], bool], within: float = 30.0) -> bool:
    """Poll `condition` (real time, for other threads) until it holds or `within` passes."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def cloud_ips(endpoint: Endpoint, node: str = "n1") -> set[str]:
    instance = node_of(endpoint, node).instance_id
    return {ip for e in endpoint.cloud.all_enis()
            if e.instance_id == instance and e.type == "Secondary" for ip in e.ips}


def test_warm_up_fills_to_min_with_one_new_eni(cloud: Endpoint, tmp_path: Path,
                                               clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=3, max_pool_size=8)
    pool.warm_up()
    assert len(pool.idle()) == 3
    assert actions(cloud)["CreateNetworkInterface"] == 1
    assert actions(cloud)["AttachNetworkInterface"] == 1
    assert cloud_ips(cloud) == {r.address for r in pool.idle()}


def test_concurrent_burst_is_coalesced_into_batches(cloud: Endpoint, tmp_path: Path,
                                                    clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, workers=4, max_pool_size=0)
    leases: dict[str, str] = {}
    start = threading.Barrier(60)

    def pod(i: int) -> None:
        start.wait()
        leases[f"default/p{i}"] = pool.alloc(PodRef(f"default/p{i}")).ip

    threads = [threading.Thread(target=pod, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(leases.values())) == 60
    assert set(leases.values()) <= cloud_ips(cloud)
    assert mutations(cloud) / 60 <= 0.3, actions(cloud)
    assigns = [c for c in cloud.calls if c.action == "AssignPrivateIpAddresses"]
    assert all(int(c.params["SecondaryPrivateIpAddressCount"]) <= BATCH for c in assigns)


def test_a_pod_asking_again_gets_its_address_and_unknown_release_succeeds(
        cloud: Endpoint, tmp_path: Path, clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock)
    first = pool.alloc(PodRef("default/a", "c1"))
    assert pool.alloc(PodRef("default/a", "c1")).ip == first.ip
    assert pool.release("default/nobody") is False
    assert pool.release("default/a", "an-older-sandbox") is False  # a newer one holds it
    assert pool.release("default/a", "c1") is True


def test_capacity_error_names_the_instance_quota_promptly(cloud: Endpoint, tmp_path: Path,
                                                          clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, node="small")
    for i in range(12):  # ecs.g7.large: 2 ENIs for pods x 6 addresses
        pool.alloc(PodRef(f"default/p{i}"))
    with pytest.raises(CapacityError, match=r"instance ENI quota: ecs.g7.large allows 3 ENIs"):
        pool.alloc(PodRef("default/one-too-many"), timeout=5)
    calls = len(cloud.calls)
    with pytest.raises(CapacityError):  # backing off: no new cloud call
        pool.alloc(PodRef("default/again"), timeout=5)
    assert len(cloud.calls) == calls
    pool.release("default/p0")
    assert pool.alloc(PodRef("default/again")).ip


def test_ordered_policy_takes_the_vswitch_with_most_free_addresses_in_the_zone(
        cloud: Endpoint, tmp_path: Path, clock: Clock) -> None:
    cloud.cloud.create_eni("vsw-a", security_groups=["sg"], secondary_count=9)
    pool = make_pool(cloud, tmp_path, clock,
                     vswitches={"z1": ["vsw-a", "vsw-b"], "z2": ["vsw-far"]})
    assert pool.alloc(PodRef("default/a")).vswitch_id == "vsw-b"


def test_exhausted_vswitch_cools_down_and_the_next_one_is_used(
        cloud: Endpoint, tmp_path: Path, clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, vswitches={"z1": ["vsw-a", "vsw-b"]})
    cloud.cloud.create_eni("vsw-a", security_groups=["sg"], secondary_count=9)
    # vsw-b looks emptiest, but the create answers IpNotEnough (someone was faster).
    cloud.faults.rules.append(FaultRule(action="CreateNetworkInterface", code=
                                        "InvalidVSwitchId.IpNotEnough", status=403,
                                        target="vsw-b"))
    assert pool.alloc(PodRef("default/a")).vswitch_id == "vsw-a"
    while cloud.cloud.available_ips("vsw-a"):  # then vsw-a runs dry as well
        cloud.cloud.create_eni("vsw-a", security_groups=["sg"], secondary_count=min(
            9, cloud.cloud.available_ips("vsw-a") - 1))
    for i in range(BATCH - 1):  # what the ENI was born with
        pool.alloc(PodRef(f"default/p{i}"))
    with pytest.raises(CapacityError, match="vSwitch exhausted: vsw-a, vsw-b"):
        pool.alloc(PodRef("default/p-next"), timeout=5)
    cloud.faults.rules.clear()
    clock.now += 301  # past the cool-down: vsw-b is tried again
    assert pool.alloc(PodRef("default/later")).vswitch_id == "vsw-b"


def test_retried_assign_never_allocates_twice(cloud: Endpoint, tmp_path: Path,
                                              clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock)
    pool.alloc(PodRef("default/first"))
    # Every other Assign reaches the cloud, which assigns, and then its answer is lost:
    # only the ClientToken makes the retry return those addresses instead of new ones.
    sdk = pool.cloud.ecs
    assign = sdk.assign_private_ip_addresses
    calls = itertools.count(1)

    def answer_lost(request: object) -> object:
        answer = assign(request)
        if next(calls) % 2:
            raise requests.ConnectionError("connection reset after the request was served")
        return answer

    sdk.assign_private_ip_addresses = answer_lost
    slept = len(clock.slept)
    for i in range(25):  # beyond the 10 the ENI was born with
        pool.alloc(PodRef(f"default/p{i}"))
    assert next(calls) > 3, "answers were lost"
    assert cloud_ips(cloud) == {r.address for r in pool.store.ips()}
    assert len(clock.slept) > slept, "retries back off"


def test_fixed_ip_comes_back_within_the_reservation_only(cloud: Endpoint, tmp_path: Path,
                                                         clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=0, max_pool_size=20)
    ip = pool.alloc(PodRef("db/mysql-0", "c1", reserve=300)).ip
    pool.release("db/mysql-0")
    for i in range(5):
        assert pool.alloc(PodRef(f"default/other-{i}")).ip != ip
    clock.now += 200
    pool.maintain()
    assert pool.alloc(PodRef("db/mysql-0", "c2", reserve=300)).ip == ip
    pool.release("db/mysql-0")
    clock.now += 301
    pool.maintain()
    assert pool.store.held_by("db/mysql-0") is None


def test_idle_above_max_is_reclaimed_and_empty_enis_are_deleted(
        cloud: Endpoint, tmp_path: Path, clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=0, max_pool_size=4)
    for i in range(40):
        pool.alloc(PodRef(f"default/p{i}"))
    enis_before = {e.id for e in pool.store.enis()}
    for i in range(40):
        pool.release(f"default/p{i}")
    pool.maintain()
    assert len(pool.idle()) == 4
    assert len(pool.store.enis()) < len(enis_before)
    assert cloud_ips(cloud) == {r.address for r in pool.store.ips()}
    gone = enis_before - {e.id for e in pool.store.enis()}
    assert not gone & set(cloud.cloud.enis), "released ENIs are deleted, not left Available"


def test_idle_reclaim_after_shrinks_toward_min(cloud: Endpoint, tmp_path: Path,
                                               clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=1, max_pool_size=10,
                     idle_ip_reclaim_after="10m")
    for i in range(8):
        pool.alloc(PodRef(f"default/p{i}"))
    for i in range(8):
        pool.release(f"default/p{i}")
    pool.maintain()
    assert len(pool.idle()) > 1
    clock.now += 601
    pool.maintain()
    assert len(pool.idle()) == 1


def test_gc_releases_pods_that_are_gone(cloud: Endpoint, tmp_path: Path, clock: Clock
                                        ) -> None:
    pool = make_pool(cloud, tmp_path, clock)
    for pod in ("default/a", "default/b", "default/c"):
        pool.alloc(PodRef(pod))
    assert pool.gc(["default/b"]) == ["default/a", "default/c"]
    assert [r.pod for r in pool.store.ips(IpState.USED)] == ["default/b"]


def test_exclusive_mode_gives_each_pod_a_whole_eni(cloud: Endpoint, tmp_path: Path,
                                                   clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, eni_mode="exclusive", min_pool_size=0,
                     max_pool_size=0)
    a, b = pool.alloc(PodRef("default/a")), pool.alloc(PodRef("default/b"))
    assert a.exclusive
    assert b.exclusive
    assert a.eni_id != b.eni_id
    assert cloud.cloud.eni(a.eni_id).ips == [a.ip]
    pool.release("default/a")
    pool.maintain()
    assert a.eni_id not in cloud.cloud.enis


def test_dual_stack_pairs_every_address_with_an_ipv6(cloud: Endpoint, tmp_path: Path,
                                                     clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock, ip_stack="dual")
    leases = [pool.alloc(PodRef(f"default/p{i}")) for i in range(12)]
    assert all(lease.ipv6 for lease in leases)
    assert len({lease.ipv6 for lease in leases}) == 12
    on_cloud = {ip for e in cloud.cloud.all_enis() for ip in e.ipv6}
    assert {lease.ipv6 for lease in leases} <= on_cloud


def test_restart_keeps_pods_and_adopts_what_the_cloud_holds(cloud: Endpoint, tmp_path: Path,
                                                            clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock)
    held = {f"default/p{i}": pool.alloc(PodRef(f"default/p{i}")).ip for i in range(7)}
    eni = pool.store.enis()[0].id
    extra = cloud.cloud.assign_ips(eni, 2)  # assigned behind the agent's back
    pool.store.close()
    again: Pool = make_pool(cloud, tmp_path, clock)
    counts = again.reconcile()
    assert counts["adopted_ips"] == 2
    assert {p: again.store.held_by(p).address for p in held} == held  # type: ignore[union-attr]
    assert set(extra) <= {r.address for r in again.idle()}


def test_alloc_timeout_runs_on_the_pools_clock(cloud: Endpoint, tmp_path: Path,
                                               clock: Clock) -> None:
    """A pod waiting on a stuck filler gives up when the pool's clock passes its deadline:
    an hour here, which only the test's clock can make pass within the test."""
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=0, max_pool_size=0)
    sdk = pool.cloud.ecs
    create = sdk.create_network_interface
    inside, unblock = threading.Event(), threading.Event()

    def stuck(request: object) -> object:
        inside.set()
        unblock.wait(60)
        return create(request)

    sdk.create_network_interface = stuck
    filler = threading.Thread(target=pool.alloc, args=(PodRef("default/first"),), daemon=True)
    filler.start()
    assert inside.wait(30), "the first pod's fill reached the cloud"
    failed: list[BusyError] = []

    def waiter() -> None:
        try:
            pool.alloc(PodRef("default/second"), timeout=3600)
        except BusyError as e:
            failed.append(e)

    second = threading.Thread(target=waiter, daemon=True)
    second.start()
    assert eventually(lambda: pool.info()["demand"] == 2), "both pods wait"
    clock.now += 3601
    gave_up = eventually(lambda: not second.is_alive())
    unblock.set()
    filler.join(30)
    assert gave_up, "the waiter timed out on the pool's clock"
    assert failed
    assert "within 3600s" in str(failed[0])
    assert pool.lease_of("default/first") is not None


def test_a_reconcile_round_describes_the_cloud_once(cloud: Endpoint, tmp_path: Path,
                                                    clock: Clock) -> None:
    pool = make_pool(cloud, tmp_path, clock)
    for i in range(15):  # two ENIs
        pool.alloc(PodRef(f"default/p{i}"))
    extra = cloud.cloud.assign_ips(pool.store.enis()[0].id, 2)  # behind the agent's back
    stranger = cloud.cloud.create_eni("vsw-a", security_groups=["sg"], secondary_count=2)
    cloud.cloud.attach_eni(stranger.id, node_of(cloud).instance_id)
    cloud.calls.clear()
    counts = pool.reconcile()
    assert (counts["adopted_ips"], counts["adopted_enis"]) == (2, 1)
    assert set(extra) | set(stranger.ips) <= {r.address for r in pool.idle()}
    describes = Counter(c.action for c in cloud.calls if c.action.startswith("Describe"))
    # one snapshot: the ENIs attached to the instance, the ENIs tagged for it
    assert describes == {"DescribeNetworkInterfaces": 2}


def test_a_lease_carries_the_gateway_metadata_gives(cloud: Endpoint, tmp_path: Path,
                                                    clock: Clock) -> None:
    """As Terway: the gateway is read from metadata, not recomputed; and an ENI the API
    shows InUse is not used until metadata shows it too (metadata lags the API)."""
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=1, max_pool_size=2)
    told: dict[str, str | None] = {"gateway": None}
    pool.gateways = lambda mac: told["gateway"]
    pool.warm_up()  # metadata never shows the ENI within the attach timeout
    assert not pool.idle()
    assert actions(cloud)["AttachNetworkInterface"] == 1
    told["gateway"] = "10.0.0.1"  # not Alibaba's .253: the lease must say what metadata said
    pool.reconcile()
    lease = pool.alloc(PodRef("default/a"), timeout=5)
    assert lease.gateway == "10.0.0.1"


def test_a_full_eni_does_not_cool_its_vswitch(cloud: Endpoint, tmp_path: Path,
                                              clock: Clock) -> None:
    """Ipv4CountExceeded is about one ENI; only IpNotEnough means the vSwitch is dry."""
    pool = make_pool(cloud, tmp_path, clock, min_pool_size=1, max_pool_size=40)
    pool.warm_up()
    cloud.faults.rules.append(FaultRule(action="AssignPrivateIpAddresses", code=
                                        "InvalidOperation.Ipv4CountExceeded", status=403,
                                        every=1))
    pool.alloc(PodRef("default/a"))  # the one idle address; the top-up is refused
    pool.maintain()
    assert not pool.is_cooling("vsw-a")
    cloud.faults.rules.clear()
    assert pool.alloc(PodRef("default/b"), timeout=5).vswitch_id == "vsw-a"
