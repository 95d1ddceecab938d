"""The ipvlan datapath's end-to-end cases, run inside the VM by test_ipvlan_in_vm.py.

Not collected on the host (its name does not start with `test_`): this host's kernel has
no ipvlan, and strict mode would turn the skips into failures. The VM emulates its CPU,
so the steps of test_datapaths.py run on one lab rather than one lab each.
"""

from __future__ import annotations

import pytest

from podlab.datapath import datapath, kernel_has_ipvlan, select_datapath
from podlab.fakecloud import default_topology
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

pytestmark = [pytest.mark.root, pytest.mark.kernel("ipvlan")]


def test_ipvlan_is_chosen_where_the_kernel_has_it() -> None:
    assert kernel_has_ipvlan()
    assert select_datapath().name == "ipvlan"
    assert select_datapath("veth").name == "veth"


def test_ipvlan_end_to_end(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(default_topology(nodes=3), agents=False)
    world = World(lab, datapath("ipvlan"))
    for spec in PODS:
        world.plug(spec)
    pristine = {node: node_snapshot(lab, node) for node in ("n1", "n2")}
    for spec in PODS:
        world.add(spec)
    assert_plumbed(world)
    assert_connectivity(world)
    assert_result_matches_the_netns(world, "p1")
    assert_setup_is_idempotent(world, "p1")
    assert_check_reports_deleted_routes(world, "p1")

    for name in ("p1", "p2"):  # n1: teardown twice, the pods' netns still there
        world.datapath.teardown(world.node_netns("n1"), world.pods[name])
        world.datapath.teardown(world.node_netns("n1"), world.pods[name])
    for name in ("p3", "p4"):  # n2: the pods' netns already gone
        lab.delete_pod("default", name)
        world.datapath.teardown(world.node_netns("n2"), world.pods[name])
    assert {node: node_snapshot(lab, node) for node in pristine} == pristine
