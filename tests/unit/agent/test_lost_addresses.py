"""Addresses the cloud takes from live pods behind the agent's back (Terway #613): found in
one reconcile round, kept out of the pool while the pod holds them, let go on its DEL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from podlab.cni.pool import PodRef, Pool
from podlab.fakecloud import Topology
from podlab.fakecloud.mock import mock
from podlab.fakecloud.wire import Endpoint
from tests.unit.agent.harness import Clock, make_pool

# One small vSwitch: the cloud hands a freed address out again at once.
WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/27"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.4xlarge"}],
})


@pytest.fixture
def cloud() -> Iterator[Endpoint]:
    with mock(WORLD) as endpoint:
        yield endpoint


def delete_out_of_band(endpoint: Endpoint, eni_id: str) -> None:
    """What a user (or another controller) does in the console: detach, then delete."""
    endpoint.cloud.detach_eni(eni_id)
    endpoint.cloud.delete_eni(eni_id)


def pool_with_pods(cloud: Endpoint, tmp_path: Path, pods: int) -> tuple[Pool, dict[str, str]]:
    pool = make_pool(cloud, tmp_path, Clock(), min_pool_size=0, max_pool_size=0)
    held = {f"default/p{i}": pool.alloc(PodRef(f"default/p{i}")).ip for i in range(pods)}
    return pool, held


def test_a_deleted_eni_is_found_in_one_round_and_its_pods_keep_their_addresses(
        cloud: Endpoint, tmp_path: Path) -> None:
    pool, held = pool_with_pods(cloud, tmp_path, 3)
    events: list[tuple[str, dict[str, object]]] = []
    pool.events = lambda event, **fields: events.append((event, fields))
    eni = pool.store.enis()[0].id
    delete_out_of_band(cloud, eni)
    counts = pool.reconcile()
    assert counts["lost_pods"] == 3
    assert {e[1]["pod"] for e in events if e[0] == "pod_lost_address"} == set(held)
    assert {r["pod"]: r["address"] for r in pool.info()["lost"]} == held
    assert all(pool.lease_of(pod) is None for pod in held)
    # the vSwitch hands the freed addresses out again: none may reach another pod
    others = {pool.alloc(PodRef(f"default/new{i}")).ip for i in range(6)}
    assert not others & set(held.values()), "a lost address went to a second pod"
    assert pool.reconcile()["lost_pods"] == 0, "found once, not again every round"


def test_a_lost_address_goes_back_only_when_its_pod_lets_go(cloud: Endpoint,
                                                           tmp_path: Path) -> None:
    pool, held = pool_with_pods(cloud, tmp_path, 1)
    (pod, ip), = held.items()
    delete_out_of_band(cloud, pool.store.enis()[0].id)
    pool.reconcile()
    taker = pool.alloc(PodRef("default/taker"))  # a new ENI: the cloud may give it `ip`
    assert taker.ip != ip
    assert pool.release(pod), "the DEL of the broken sandbox lets its address go"
    assert not pool.info()["lost"]
    pool.reconcile()  # an address the cloud gave us meanwhile is adopted now
    again = pool.alloc(PodRef(pod))  # the recreated sandbox
    assert again.ip != taker.ip


def test_a_new_sandbox_of_the_pod_replaces_its_lost_address(cloud: Endpoint,
                                                            tmp_path: Path) -> None:
    pool, held = pool_with_pods(cloud, tmp_path, 1)
    (pod, _), = held.items()
    delete_out_of_band(cloud, pool.store.enis()[0].id)
    pool.reconcile()
    lease = pool.alloc(PodRef(pod, "sandbox-2"))
    assert pool.lease_of(pod) == lease
    assert not pool.info()["lost"]


def test_gc_lets_go_of_the_lost_address_of_a_pod_that_is_gone(cloud: Endpoint,
                                                              tmp_path: Path) -> None:
    pool, _ = pool_with_pods(cloud, tmp_path, 2)
    delete_out_of_band(cloud, pool.store.enis()[0].id)
    pool.reconcile()
    assert pool.gc(["default/p0"]) == ["default/p1"]
    assert [r["pod"] for r in pool.info()["lost"]] == ["default/p0"]
