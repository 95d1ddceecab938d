"""ADD and DEL latency of podlab-cni on a warm pool against the reference bridge+host-local,
both driven by the same runtime code from the same node in the same run: 50 pods one by
one, then 20 at once. Goal: ADD p50 at most 1.5 times the reference. Prints figures;
asserts no time.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from podlab.fakecloud import Topology
from podlab.lab import Lab
from podlab.lab.cni_runtime import Attachment, CniRuntime, NetworkList, PluginExec

pytestmark = pytest.mark.root

ONE_BY_ONE = 50
AT_ONCE = 20
BIG_NODE = Topology.from_dict({
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "192.168.0.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.4xlarge"}]})
REFERENCE = Path(__file__).parents[2] / "podlab/lab/conformance/reference/bridge.conflist"


def _p(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def _drive(lab: Lab, runtime: CniRuntime, net: NetworkList, prefix: str
           ) -> dict[str, list[float]]:
    """ADD then DEL for pods one by one, then AT_ONCE concurrently; latencies by phase."""
    times: dict[str, list[float]] = {"add": [], "del": [], "add-burst": []}
    lock = threading.Lock()

    def attachment(i: int) -> Attachment:
        pod = lab.add_pod(prefix, f"p{i}", "n1")
        return Attachment(f"{prefix}-{i}", f"/run/netns/{pod.netns}",
                          args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": prefix,
                                "K8S_POD_NAME": f"p{i}"})

    def timed(phase: str, do: Callable[[], object]) -> None:
        started = time.perf_counter()
        do()
        with lock:
            times[phase].append(time.perf_counter() - started)

    warm_up = attachment(ONE_BY_ONE + AT_ONCE)  # untimed: first-use costs on either side
    runtime.add(net, warm_up)
    runtime.delete(net, warm_up)
    for i in range(ONE_BY_ONE):
        att = attachment(i)
        timed("add", lambda att=att: runtime.add(net, att))  # type: ignore[misc]
        timed("del", lambda att=att: runtime.delete(net, att))  # type: ignore[misc]
    burst = [attachment(ONE_BY_ONE + i) for i in range(AT_ONCE)]
    threads = [threading.Thread(target=timed, args=("add-burst", lambda a=a: runtime.add(
        net, a))) for a in burst]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in burst:
        runtime.delete(net, a)
    return times


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
    figures = {"podlab-cni": _drive(lab, runtime, ours, "ours"),
               "bridge+host-local": _drive(lab, runtime, NetworkList.from_dict(reference),
                                           "ref")}
    print()
    for name, times in figures.items():
        line = ", ".join(f"{phase} p50 {_p(v)[0]:.1f} ms p99 {_p(v)[1]:.1f} ms"
                         for phase, v in times.items())
        print(f"{name}: {line}")
    ratio = _p(figures["podlab-cni"]["add"])[0] / _p(figures["bridge+host-local"]["add"])[0]
    print(f"ADD p50 ratio podlab-cni / bridge+host-local: {ratio:.2f}x (goal <= 1.5x)")
    assert len(figures["podlab-cni"]["add-burst"]) == AT_ONCE
