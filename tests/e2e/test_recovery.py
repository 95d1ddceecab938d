"""Recovery with no hand-holding: a crashed agent comes back by itself (with back-off) and
the pods made meanwhile start; while it is down its node is not ready and gets no new
pods; an ENI deleted out of band ends with every Running pod on a unique, working
address; an ENI detached out of band is attached again and its pods answer on their own
addresses. After each fault the lab's invariants hold again (podlab.lab.invariants)."""

from __future__ import annotations

import json
import os
import signal
from functools import partial
from typing import Any

import pytest

from podlab.controllers import workqueue
from podlab.kubeapi.store import Store
from podlab.lab import Lab
from podlab.lab.agents import NodeAgents
from podlab.lab.invariants import check
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import eventually, ping, podlab

pytestmark = pytest.mark.root


def pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "podlab/agnhost"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def api(lab: Lab) -> Store:
    assert lab.control_plane is not None
    return lab.control_plane.store


def running_ips(lab: Lab, names: list[str]) -> dict[str, str] | None:
    """Each pod's address, once all of them run."""
    pods = {p["metadata"]["name"]: p for p in api(lab).list("pods")[0]}
    status = [(pods.get(n) or {}).get("status") or {} for n in names]
    if any(s.get("phase") != "Running" for s in status):
        return None
    return {n: str(s["podIP"]) for n, s in zip(names, status, strict=True)}


def ready(lab: Lab, node: str) -> dict[str, Any]:
    conditions = api(lab).get("nodes", None, node)["status"]["conditions"]
    return dict(next(c for c in conditions if c["type"] == "Ready"))


def node_status(lab: Lab, node: str) -> dict[str, Any]:
    """The node as `podlab status --json` shows it."""
    out = json.loads(podlab("status", "--name", lab.name, "--json").stdout)
    return dict(next(n for n in out["nodes"] if n["name"] == node))


def test_a_killed_agent_comes_back_by_itself_and_pods_made_meanwhile_start(lab: Lab) -> None:
    assert lab.agents is not None
    assert lab.control_plane is not None
    killed = lab.agents.procs["n1"].pid
    os.kill(killed, signal.SIGKILL)  # a crash: nobody in the lab asked for it
    names = [f"meanwhile-{i}" for i in range(4)]
    for name in names:
        api(lab).create("pods", pod(name, "n1"))
    ips = eventually(lambda: running_ips(lab, names), what="the pods made meanwhile Running")
    assert len(set(ips.values())) == len(names), f"an address twice: {ips}"
    calls = lab.control_plane.runtimes["n1"].cni.plugins.calls
    assert any(c.command == "ADD" and c.exit_code != 0 for c in calls), \
        "no ADD met the outage: the test did not test it"
    assert lab.agents.procs["n1"].pid != killed
    shown = node_status(lab, "n1")
    assert (shown["agent_state"], shown["agent_restarts"], shown["agent_last_exit"]) == \
        ("Running", 1, -signal.SIGKILL)
    table = podlab("status", "--name", lab.name).stdout
    assert any(line.split()[:4] == ["n1", "Running", "1", "SIGKILL"]
               for line in table.splitlines()), table
    for ip in ips.values():
        assert ping(lab, "n2", ip), f"{ip} does not answer"
    check(lab, reach=True, within=30)


def new_agent(agents: NodeAgents, node: str, old: int | None) -> int | None:
    """The pid of the node's agent, once it is not `old`."""
    proc = agents.procs.get(node)
    return proc.pid if proc is not None and proc.pid != old else None


def test_an_agent_that_keeps_crashing_is_restarted_with_a_doubling_back_off(
        lab_factory: LabFactory) -> None:
    lab = lab_factory(control_plane=False)
    assert lab.agents is not None
    pid = None
    for _ in range(3):
        pid = eventually(partial(new_agent, lab.agents, "n1", pid), what="the agent again")
        os.kill(pid, signal.SIGKILL)

    def crashes() -> list[tuple[str, float]]:
        return [(e["node"], e["restart_in"]) for e in lab.events.read()
                if e["event"] == "agent.crashed"]

    eventually(lambda: len(crashes()) == 3, what="three crashes seen")
    assert crashes() == [("n1", 1.0), ("n1", 2.0), ("n1", 4.0)]
    shown = lab.state.node("n1")  # as state.json has it (`podlab status` reads that)
    assert (shown.agent_state, shown.agent_restarts) == ("CrashLoopBackOff", 2)


def test_while_its_agent_is_down_a_node_is_not_ready_and_its_pods_wait(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lab.agents is not None
    assert lab.control_plane is not None
    # a runtime that left its retries to the work queue would give up after three
    monkeypatch.setattr(workqueue, "MAX_RETRIES", 3)
    lab.agents.kill("n1")  # the lab's own kill: down until the lab starts it
    down = eventually(lambda: (c := ready(lab, "n1"))["status"] == "False" and c,
                      what="n1 not ready")
    assert down["reason"] == "NetworkPluginNotReady"
    assert "podlab agent is not available" in down["message"]
    api(lab).create("pods", pod("floating"))
    api(lab).create("pods", pod("pinned", "n1"))
    eventually(lambda: running_ips(lab, ["floating"]), what="the floating pod Running")
    assert api(lab).get("pods", "default", "floating")["spec"]["nodeName"] == "n2"
    calls = lab.control_plane.runtimes["n1"].cni.plugins.calls  # the pinned pod's alone
    eventually(lambda: sum(c.command == "ADD" and c.exit_code != 0 for c in calls) > 4,
               what="the pinned pod's sandbox tried again and again")
    status = api(lab).get("pods", "default", "pinned")["status"]
    assert status["phase"] == "Pending"
    assert any(c.get("reason") == "FailedCreatePodSandBox" for c in status["conditions"])
    lab.agents.start("n1")
    eventually(lambda: running_ips(lab, ["pinned"]), what="the pinned pod Running")
    eventually(lambda: ready(lab, "n1")["status"] == "True", what="n1 ready again")
    check(lab, reach=True, within=30)


def test_an_eni_deleted_out_of_band_ends_with_unique_working_addresses(
        lab_factory: LabFactory) -> None:
    lab = lab_factory(agent_settings={"reconcile_period": 1.0})
    assert lab.cloud is not None
    names = [f"web-{i}" for i in range(4)]
    for name in names:
        api(lab).create("pods", pod(name, "n1"))
    before = eventually(lambda: running_ips(lab, names), what="the pods Running")
    model, instance = lab.cloud.model, lab.state.node("n1").instance_id
    eni = next(e for e in model.all_enis()
               if e.instance_id == instance and set(e.ips) & set(before.values()))
    victims = {n for n, ip in before.items() if ip in eni.ips}
    with model.lock:  # as in the console: detached and deleted before the agent looks
        model.detach_eni(eni.id)
        model.delete_eni(eni.id)
    late = [f"late-{i}" for i in range(3)]  # drawing on the addresses the vSwitch got back
    for name in late:
        api(lab).create("pods", pod(name, "n1"))

    def converged() -> dict[str, str] | None:
        shown = {p.name: p for p in lab.state.pods}
        recreated = all(n in shown and shown[n].sandbox_restarts for n in victims)
        return running_ips(lab, names + late) if recreated else None

    ips = eventually(converged, what="the pods of the deleted ENI recreated, all Running")
    assert len(set(ips.values())) == len(ips), f"two Running pods share an address: {ips}"
    on_cloud = {ip for e in model.all_enis()
                if e.instance_id == instance and e.status == "InUse" for ip in e.ips}
    assert set(ips.values()) <= on_cloud, "a Running pod's address is not on an ENI"
    for ip in ips.values():
        assert ping(lab, "n2", ip), f"{ip} does not answer"
    check(lab, reach=True, within=30)
    out = json.loads(podlab("status", "--name", lab.name, "--json").stdout)
    for shown in out["pods"]:
        if shown["name"] in victims:
            assert shown["health"] == "Running"
            assert eni.id in shown["last_problem"]
    node = lab.state.node("n1")
    scrape = lab.exec("n1", ["python3", "-c", "import urllib.request,sys; sys.stdout.write("
                             f"urllib.request.urlopen('http://{node.primary_ip}:9464/"
                             "metrics').read().decode())"]).stdout
    found = next(line for line in scrape.splitlines()
                 if line.startswith("podlab_agent_lost_addresses_total "))
    assert float(found.split()[1]) >= len(victims)  # and a late pod's, if it came first


def test_an_eni_detached_out_of_band_comes_back_with_its_pods_reachable(
        lab_factory: LabFactory) -> None:
    lab = lab_factory(agent_settings={"reconcile_period": 1.0})
    assert lab.cloud is not None
    names = [f"web-{i}" for i in range(3)]
    for name in names:
        api(lab).create("pods", pod(name, "n1"))
    api(lab).create("pods", pod("client", "n2"))  # probes them across the VPC
    before = eventually(lambda: running_ips(lab, names), what="the pods Running")
    check(lab, reach=True, within=30)
    model, instance = lab.cloud.model, lab.state.node("n1").instance_id
    eni = next(e for e in model.all_enis()
               if e.instance_id == instance and set(e.ips) & set(before.values()))
    model.detach_eni(eni.id)  # as in the console; the agent re-attaches it
    eventually(lambda: any(e["event"] == "reconciled" and e.get("reattached")
                           for e in agent_log(lab, "n1")), what="the ENI re-attached")
    check(lab, reach=True, within=30)  # was: rules to the old device's table, black hole
    assert running_ips(lab, names) == before, "the pods were not kept on their addresses"
    assert lab.agents is not None
    lab.agents.kill("n1")  # a successor rebuilds nothing it should not, and loses nothing
    lab.agents.start("n1")
    check(lab, reach=True, within=30)


def agent_log(lab: Lab, node: str) -> list[dict[str, Any]]:
    assert lab.agents is not None
    path = lab.agents.node_dir(node) / "agent.log"
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.startswith("{")]
