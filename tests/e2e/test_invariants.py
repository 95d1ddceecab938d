"""The invariant checker catches each invariant broken on purpose, names what broke it, and
holds again once it is repaired (podlab.lab.invariants, docs/invariants.md)."""

from __future__ import annotations

import json
import time

import pytest

from podlab.cni import protocol
from podlab.lab import Lab
from podlab.lab.invariants import InvariantError, Violation, check, violations
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import eventually, podlab
from tests.e2e.test_recovery import api, pod, running_ips

pytestmark = pytest.mark.root


def broken(lab: Lab, invariant: str, *, reach: bool = False) -> list[Violation]:
    """The violations of `invariant`, once `check` refuses the lab for that one alone (an
    agent between a cloud call and its store's commit disagrees for a moment)."""
    def alone() -> list[Violation] | None:
        with pytest.raises(InvariantError) as refused:
            check(lab, reach=reach)
        found = refused.value.violations
        return found if {v.invariant for v in found} == {invariant} else None

    return eventually(alone, timeout=10, what=f"{invariant} broken, and only it")


def test_each_invariant_is_caught_when_broken_and_holds_when_repaired(
        lab_factory: LabFactory) -> None:
    lab = lab_factory(agent_settings={"min_pool_size": 4})  # idle addresses to take
    assert lab.cloud is not None
    for name, node in (("a", "n1"), ("b", "n1"), ("c", "n2")):
        api(lab).create("pods", pod(name, node))
    ips = eventually(lambda: running_ips(lab, ["a", "b", "c"]), what="the pods Running")
    started = time.monotonic()
    check(lab, reach=True, within=30)
    print(f"a check with reach on 2 nodes, 3 pods: {time.monotonic() - started:.2f}s")
    model = lab.cloud.model

    # 2: the VPC router forgets a pod's address
    eni_a = next(e.id for e in model.all_enis() if ips["a"] in e.ips)
    lab.fabric.unroute_ip(ips["a"])
    [seen] = broken(lab, "address-routed")
    assert seen.objects == ("default/a", ips["a"])
    assert "sends it to nowhere" in seen.seen
    lab.fabric.route_ip(ips["a"], eni_a)
    check(lab, within=10)

    # 3: the cloud unassigns an idle address behind the agent's back
    info = protocol.call(lab.state.node("n1").agent_socket, "info")
    eni, idle = next((e["id"], ip["address"]) for e in info["enis"] for ip in e["ips"]
                     if ip["state"] == "idle" and ip["address"] != e["primary_ip"])
    model.unassign_ips(eni, [idle])
    [seen] = broken(lab, "agent-agrees")
    assert seen.objects == ("n1", idle)
    assert f"idle on {eni}" in seen.seen
    assert "on no ENI of this node" in seen.seen
    model.assign_ips(eni, explicit=[idle])
    check(lab, within=10)

    # 1: a pod's netns holds another pod's address
    lab.exec("default/a", ["ip", "addr", "add", f"{ips['c']}/32", "dev", "eth0"])
    [seen] = broken(lab, "unique-address")
    assert seen.objects == ("default/a", "default/c")
    lab.exec("default/a", ["ip", "addr", "del", f"{ips['c']}/32", "dev", "eth0"])
    check(lab, within=10)

    # 4: a pod drops every connection it is offered (and answers those it makes)
    drop = ["INPUT", "-p", "tcp", "--syn", "-j", "DROP"]
    lab.exec("default/c", ["iptables", "-I", *drop])
    found = broken(lab, "reachable", reach=True)
    assert {v.objects for v in found} == {("default/a", "default/c"), ("default/b", "default/c")}
    lab.exec("default/c", ["iptables", "-D", *drop])
    check(lab, reach=True, within=10)


def test_podlab_check_reports_on_a_running_lab(lab: Lab) -> None:
    assert lab.cloud is not None
    api(lab).create("pods", pod("a", "n1"))
    ips = eventually(lambda: running_ips(lab, ["a"]), what="the pod Running")
    check(lab, within=30)
    ok = podlab("check", "--name", lab.name, "--reach", "--within", "10")
    assert (ok.returncode, ok.stderr) == (0, ""), ok.stderr
    assert ok.stdout.startswith("ok:"), ok.stdout
    lab.fabric.unroute_ip(ips["a"])
    bad = podlab("check", "--name", lab.name, "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert json.loads(bad.stdout) == [v.to_dict() for v in violations(lab)]
