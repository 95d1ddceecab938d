"""The agent's answers to requests that would once release live pods' addresses, leak an
address, or drop the connection (issue 18: defects 1, 2 and 8), against the in-process
fake cloud; the pod's plumbing is stubbed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from podlab.cni import agent as agent_module
from podlab.cni.agent import Agent
from podlab.cni.identity import MetadataError
from podlab.cni.maintain import Maintenance
from podlab.cni.pool import IpState
from podlab.datapath.registry import datapath
from podlab.fakecloud import Topology
from podlab.fakecloud.mock import mock
from tests.unit.agent.harness import Clock, make_pool

WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"}],
})


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    with mock(WORLD) as endpoint:
        pool = make_pool(endpoint, tmp_path, Clock(), max_pool_size=10)
        events: list[tuple[str, dict[str, Any]]] = []
        a = Agent(pool.config, events=lambda event, **fields: events.append((event, fields)))
        a.pool, a.datapath = pool, datapath("veth")
        try:
            yield a
        finally:
            pool.store.close()


def ask(agent: Agent, **request: Any) -> dict[str, Any]:
    return agent.handle(json.dumps(request).encode())


def used(agent: Agent) -> list[str]:
    assert agent.pool is not None
    return sorted(r.pod for r in agent.pool.store.ips(IpState.USED) if r.pod)


def test_gc_without_its_list_of_the_living_releases_nothing(agent: Agent) -> None:
    for pod in ("default/a", "default/b"):
        assert ask(agent, op="alloc", pod=pod, container=f"c-{pod[-1]}")["ok"]
    for request in ({"op": "gc_containers"}, {"op": "gc_containers", "containers": None},
                    {"op": "gc_containers", "containers": "c-a"},
                    {"op": "gc_containers", "containers": [7]},
                    {"op": "gc"}, {"op": "gc", "pods": "default/a"}):
        answer = ask(agent, **request)
        assert (answer["ok"], answer["error"]) == (False, "invalid"), request
    assert used(agent) == ["default/a", "default/b"]
    assert ask(agent, op="gc_containers", containers=["c-a"])["released"] == ["default/b"]
    assert used(agent) == ["default/a"]


@pytest.mark.parametrize(("error", "kind"), [
    (NetlinkError(22, "Invalid argument"), "datapath"),  # no OSError: it used to escape
    (MetadataError("unexpected"), "internal"),
])
def test_an_add_whose_set_up_fails_in_any_way_gives_its_address_back(
        agent: Agent, monkeypatch: pytest.MonkeyPatch, error: Exception, kind: str) -> None:
    def failing(*_: object) -> None:
        raise error

    monkeypatch.setattr(agent_module, "pod_network", lambda *_: None)
    monkeypatch.setattr(agent_module, "set_up", failing)
    answer = ask(agent, op="add", pod="default/a", container="c1", netns="/run/netns/p",
                 ifname="eth0")
    assert (answer["ok"], answer["error"]) == (False, kind)
    assert used(agent) == []


@pytest.mark.parametrize("ifname", ["", "x" * 16, "a/b", "a:b", "eth 0", ".", ".."])
def test_a_bad_interface_name_is_refused_before_an_address_is_taken(
        agent: Agent, ifname: str) -> None:
    for op in ("add", "check", "del"):
        answer = ask(agent, op=op, pod="default/a", container="c1", netns="/run/netns/p",
                     ifname=ifname)
        assert (answer["ok"], answer["error"]) == (False, "argument"), op
    assert used(agent) == []


def test_an_unexpected_error_is_answered_not_dropped(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    assert agent.pool is not None

    def broken() -> dict[str, Any]:
        raise AssertionError("a bug")

    monkeypatch.setattr(agent.pool, "info", broken)
    assert ask(agent, op="info") == {"ok": False, "error": "internal",
                                     "message": "AssertionError: a bug"}
    assert ask(agent, op=[1])["error"] == "invalid"
    assert agent.handle(b"[1]")["error"] == "invalid"


def test_status_fails_while_maintenance_fails(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    assert agent.pool is not None
    agent.maintenance = Maintenance(agent.pool, agent.config, agent.metrics, agent.events)
    assert ask(agent, op="status") == {"ok": True}

    def timeout() -> None:
        raise MetadataError("metadata timed out")

    monkeypatch.setattr(agent.pool, "maintain", timeout)
    agent.maintenance.round()
    answer = ask(agent, op="status")
    assert (answer["ok"], answer["error"]) == (False, "unavailable")
    assert "metadata timed out" in answer["message"]
    monkeypatch.undo()
    agent.maintenance.round()
    assert ask(agent, op="status") == {"ok": True}
