"""Each datapath end to end on real namespaces: the connectivity matrix with the pod's own
IP as source, the CNI result matching the netns, check(), and clean, idempotent teardown.

`dp` (conftest.py) names the datapath; vm_ipvlan_cases.py runs the same steps for ipvlan.
"""

from __future__ import annotations

from podlab.datapath import Datapath
from podlab.fakecloud import default_topology
from podlab.lab import Lab
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.datapath.world import (
    PODS,
    World,
    assert_check_reports_deleted_routes,
    assert_connectivity,
    assert_plumbed,
    assert_result_matches_the_netns,
    assert_setup_is_idempotent,
    node_snapshot,
)
from tests.e2e.helpers import ip_json, ping

P1 = PODS[0]


def test_connectivity_matrix(lab_factory: LabFactory, dp: Datapath) -> None:
    world = World(lab_factory(default_topology(nodes=3), agents=False), dp)
    for spec in PODS:
        world.add(spec)
    assert_plumbed(world)
    assert_connectivity(world)


def test_result_describes_the_pod_interface(lab: Lab, dp: Datapath) -> None:
    world = World(lab, dp)
    world.add(P1)
    assert_result_matches_the_netns(world, P1.name)


def test_setup_and_teardown_are_idempotent(lab: Lab, dp: Datapath) -> None:
    world = World(lab, dp)
    world.plug(P1)
    pristine = node_snapshot(lab, "n1")
    pod = world.add(P1)
    assert_setup_is_idempotent(world, P1.name)
    assert ping(lab, "default/p1", lab.state.node("n2").primary_ip)
    dp.teardown(world.node_netns("n1"), pod)
    dp.teardown(world.node_netns("n1"), pod)
    assert node_snapshot(lab, "n1") == pristine
    assert [link["ifname"] for link in ip_json(lab, "default/p1", "link", "show")] == ["lo"]


def test_teardown_of_two_pods_leaves_the_node_as_before(lab: Lab, dp: Datapath) -> None:
    world = World(lab, dp)
    for spec in PODS[:2]:
        world.plug(spec)
    pristine = node_snapshot(lab, "n1")
    for spec in PODS[:2]:
        world.add(spec)
    assert node_snapshot(lab, "n1") != pristine
    for pod in world.pods.values():
        dp.teardown(world.node_netns("n1"), pod)
    assert node_snapshot(lab, "n1") == pristine


def test_teardown_after_the_pod_netns_is_gone(lab: Lab, dp: Datapath) -> None:
    world = World(lab, dp)
    world.plug(P1)
    pristine = node_snapshot(lab, "n1")
    pod = world.add(P1)
    lab.delete_pod("default", P1.name)
    dp.teardown(world.node_netns("n1"), pod)
    dp.teardown(world.node_netns("n1"), pod)
    if not world.exclusive:  # a virtual exclusive ENI dies with the netns; nothing to return
        assert node_snapshot(lab, "n1") == pristine


def test_check_reports_a_deleted_route_and_setup_repairs_it(lab: Lab, dp: Datapath) -> None:
    world = World(lab, dp)
    world.add(P1)
    assert_plumbed(world)
    assert_check_reports_deleted_routes(world, P1.name)
