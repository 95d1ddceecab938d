"""ADD and DEL latency of podlab-cni on a warm pool against the reference bridge+host-local,
both driven by the same runtime code from the same node in the same run: 100 pods one by
one (the two sides taking turns), then 20 at once. Goals: ADD p50 at most 1.3 times the
reference's, ADD p99 at most 2 times the reference's. Prints figures; asserts no time.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from podlab.fakecloud import Topology
from podlab.lab import Lab
from podlab.lab.cni_runtime import Attachment, CniRuntime, NetworkList, PluginExec

pytestmark = pytest.mark.root

ONE_BY_ONE = 100
AT_ONCE = 20
BIG_NODE = Topology.from_dict({
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "192.168.0.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.4xlarge"}]})
REFERENCE = Path(__file__).parents[2] / "podlab/lab/conformance/reference/bridge.conflist"
GOALS = {"p50": 1.3, "p99": 2.0}  # ADD, podlab-cni against the reference


def _p(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


@dataclass
class _Side:
    """One network under test: its pods' namespace and its latencies by phase."""

    net: NetworkList
    prefix: str
    times: dict[str, list[float]] = field(default_factory=lambda: {
        "add": [], "del": [], "add-burst": []})


def _drive(lab: Lab, runtime: CniRuntime, sides: list[_Side]) -> None:
    """ADD then DEL for pods one by one, the sides taking turns pod by pod, so that a
    change in the shared machine's load weighs on both alike; then AT_ONCE pods at once,
    one side after the other."""
    lock = threading.Lock()

    def attachment(side: _Side, i: int) -> Attachment:
        pod = lab.add_pod(side.prefix, f"p{i}", "n1")
        return Attachment(f"{side.prefix}-{i}", f"/run/netns/{pod.netns}",
                          args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": side.prefix,
                                "K8S_POD_NAME": f"p{i}"})

    def timed(side: _Side, phase: str, do: Callable[[], object]) -> None:
        started = time.perf_counter()
        do()
        with lock:
            side.times[phase].append(time.perf_counter() - started)

    for side in sides:  # untimed: first-use costs on either side
        warm_up = attachment(side, ONE_BY_ONE + AT_ONCE)
        runtime.add(side.net, warm_up)
        runtime.delete(side.net, warm_up)
    for i in range(ONE_BY_ONE):
        for side in sides:
            att = attachment(side, i)
            timed(side, "add", partial(runtime.add, side.net, att))
            timed(side, "del", partial(runtime.delete, side.net, att))
    for side in sides:
        burst = [attachment(side, ONE_BY_ONE + i) for i in range(AT_ONCE)]
        threads = [threading.Thread(target=timed, args=(
            side, "add-burst", partial(runtime.add, side.net, a))) for a in burst]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a in burst:
            runtime.delete(side.net, a)


def test_add_del_latency_against_bridge_host_local(lab_factory: Callable[..., Lab],
                                                   tmp_path: Path) -> None:
    lab = lab_factory(BIG_NODE, agent_settings={"min_pool_size": 30, "max_pool_size": 80})
    node = lab.state.node("n1")
    plugins = PluginExec([node.cni_bin_dir, "/usr/lib/cni"],
                         wrap=["ip", "netns", "exec", node.netns])
    runtime = CniRuntime(plugins)
    ours = NetworkList.from_dict({"cniVersion": "1.0.0", "name": "podlab", "plugins": [
        {"type": "podlab-cni", "agent_socket": node.agent_socket}]})
    reference = json.loads(REFERENCE.read_text())
    reference["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "host-local")  # this run's
    sides = {"podlab-cni": _Side(ours, "ours"),
             "bridge+host-local": _Side(NetworkList.from_dict(reference), "ref")}
    _drive(lab, runtime, list(sides.values()))
    print()
    for name, side in sides.items():
        line = ", ".join(f"{phase} p50 {_p(v)[0]:.1f} ms p99 {_p(v)[1]:.1f} ms"
                         for phase, v in side.times.items())
        print(f"{name}: {line}")
    mine_add = _p(sides["podlab-cni"].times["add"])
    theirs_add = _p(sides["bridge+host-local"].times["add"])
    for (cut, goal), mine, theirs in zip(GOALS.items(), mine_add, theirs_add, strict=True):
        print(f"ADD {cut}: podlab-cni {mine:.1f} ms, bridge+host-local {theirs:.1f} ms, "
              f"ratio {mine / theirs:.2f}x (goal <= {goal}x)")
    assert len(sides["podlab-cni"].times["add-burst"]) == AT_ONCE
