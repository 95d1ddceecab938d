"""The agent's two speeds, each against a reference measured in the same run.

Cold burst: 200 pods ask a node with an empty pool at once, the cloud answering as a real
one does (attach ~1 s to InUse, mutations ~100 ms). Reference: the critical path the
batched calls cannot beat — one ENI created with 10 addresses, attached, waited for and
topped up to its quota by hand through the SDK. Goal: ≤ 0.15 cloud calls per pod and a
total close to the reference.

Warm alloc over the socket: p50/p99 of alloc+release round trips on a warm pool, against
a bare unix-socket JSON echo served the same way. Goal: p50 < 5 ms, p99 < 20 ms.

Prints figures; asserts only counts, never time.
"""

from __future__ import annotations

import json
import socketserver
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from podlab.cni import protocol
from podlab.cni.cloudapi import CloudApi
from podlab.cni.identity import Credentials
from podlab.cni.pool import BATCH, PodRef
from podlab.fakecloud import Topology
from podlab.fakecloud.faults import FaultRule
from podlab.fakecloud.mock import mock
from podlab.lab import Lab
from tests.unit.agent.harness import make_pool, node_of

PODS = 200
ATTACH = 1.0
MUTATION = 0.1
WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/22"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.8xlarge"},
              {"name": "ref", "vswitch": "vsw-a", "instance_type": "ecs.g7.8xlarge"}],
})


class RealTime:
    """The harness's clock interface on the real clock: the burst runs in real time."""

    def __call__(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _reference_chain(region: str, instance: str, per_eni: int) -> float:
    """One ENI's critical path by hand: create (10), attach, poll to InUse, top up."""
    api = CloudApi("ecs.podlab.local", region, Credentials("podlab", "podlab-secret"))
    started = time.monotonic()
    eni = api.create_eni("vsw-a", ["sg"], BATCH, {}, "ref-create")
    api.attach(eni.id, instance)
    while api.describe_enis(eni_ids=[eni.id])[0].status != "InUse":
        time.sleep(0.05)
    for i, have in enumerate(range(BATCH, per_eni, BATCH)):
        api.assign_ips(eni.id, min(BATCH, per_eni - have), f"ref-assign-{i}")
    return time.monotonic() - started


def test_cold_burst_of_200_allocs() -> None:
    with mock(WORLD, attach_delay=ATTACH) as endpoint, tempfile.TemporaryDirectory() as d:
        for action in ("CreateNetworkInterface", "AttachNetworkInterface",
                       "AssignPrivateIpAddresses"):
            endpoint.faults.rules.append(FaultRule(action=action, latency=MUTATION))
        clock = RealTime()
        pool = make_pool(endpoint, Path(d), clock, workers=8, min_pool_size=0,  # type: ignore[arg-type]
                         max_pool_size=0)
        reference = _reference_chain(WORLD.region, node_of(endpoint, "ref").instance_id,
                                     pool.per_eni)
        endpoint.calls.clear()
        leases: dict[int, str] = {}
        gate = threading.Barrier(PODS + 1)

        def pod(i: int) -> None:
            gate.wait()
            leases[i] = pool.alloc(PodRef(f"default/p{i}")).ip

        threads = [threading.Thread(target=pod, args=(i,)) for i in range(PODS)]
        for t in threads:
            t.start()
        gate.wait()
        started = time.monotonic()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        calls = Counter(c.action for c in endpoint.calls)
        per_pod = sum(calls.values()) / PODS
        print(f"\ncold burst: {PODS} pods in {elapsed:.2f}s; reference critical path "
              f"{reference:.2f}s; ratio {elapsed / reference:.2f}x; "
              f"{per_pod:.3f} cloud calls per pod (goal <= 0.15): {dict(calls)}")
        assert len(set(leases.values())) == PODS
        assert per_pod <= 0.2, calls


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request = json.loads(self.rfile.readline())
        self.wfile.write(json.dumps({"ok": True, "echo": request}).encode() + b"\n")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


@pytest.mark.root
def test_warm_alloc_over_the_socket(lab_factory: object) -> None:
    lab: Lab = lab_factory(agent_settings={"min_pool_size": 40, "max_pool_size": 60})  # type: ignore[operator]
    node = lab.state.nodes[0]
    rounds = 300
    alloc: list[float] = []
    for i in range(rounds):
        started = time.perf_counter()
        protocol.call(node.agent_socket, "alloc", pod=f"default/p{i % 20}")
        alloc.append(time.perf_counter() - started)
        protocol.call(node.agent_socket, "release", pod=f"default/p{i % 20}")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "echo.sock"
        server = socketserver.ThreadingUnixStreamServer(str(path), _Echo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        echo: list[float] = []
        for i in range(rounds):
            started = time.perf_counter()
            protocol.call(path, "alloc", pod=f"default/p{i % 20}")
            echo.append(time.perf_counter() - started)
        server.shutdown()
        server.server_close()
    (p50, p99), (e50, e99) = _percentiles(alloc), _percentiles(echo)
    print(f"\nwarm alloc over the socket: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(goal < 5 / < 20); bare echo p50 {e50:.2f} ms, p99 {e99:.2f} ms; "
          f"ratio p50 {p50 / e50:.1f}x")
