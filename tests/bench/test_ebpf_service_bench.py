"""New-connection rate from a client pod to a ClusterIP, with N Services programmed: the tc
eBPF programs on the pod's eth0 against kube-proxy's iptables and nftables rules in the node
netns, in the same run on the same namespaces; and the time to program the N Services.

N = 1 and 1,000 (PODLAB_BENCH_FULL=1 adds 5,000 and 10,000); for the rules the target is the
last Service, where iptables' linear chain is slowest. Prints rates and ratios; asserts no
time, only that every path served every connection.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from podlab.datapath import kubeproxy
from podlab.datapath.bpf import Backend, Conntrack, Service, ServiceMaps, ServicePort
from tests.bench.connect import BURSTS, accept_forever, connect_rate
from tests.e2e.bpf.world import World

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool", "iptables",
                                                   "nftables")]
SIZES = (1, 1000, 5000, 10000) if os.environ.get("PODLAB_BENCH_FULL") == "1" else (1, 1000)
CONNECTIONS = 5000
BACKENDS = ("b1", "b2")
FIRST_VIP = IPv4Address("10.96.0.1")


@dataclass(frozen=True)
class Row:
    size: int
    path: str
    rate: float      # connections per second
    program_s: float
    change_s: float | None = None  # one endpoint change of one Service (eBPF only)


def vip(i: int) -> str:
    return str(FIRST_VIP + i)


def endpoint_change(maps: ServiceMaps, ip: str, backends: tuple[Backend, ...]) -> float:
    """Seconds to apply one endpoint change to one Service, as one watch event does: the
    median of swapping its second backend out and back in."""
    times = []
    for i in range(20):
        now = backends if i % 2 else backends[:1]
        start = time.perf_counter()
        maps.update(ip, Service(ip, (ServicePort(80, "tcp", now),)))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture
def bench_world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        for pod in ("client", *BACKENDS):
            world.add_pod(pod)
        for pod in BACKENDS:
            accept_forever(world, pod, 8080)
        yield world
    finally:
        world.close()


def test_new_connection_rate_ebpf_against_kube_proxy(bench_world: World,
                                                      connect_loop: Path) -> None:
    w = bench_world
    client = w.pods["client"].netns
    backends = tuple(w.backend(b) for b in BACKENDS)
    programs = w.programs()
    maps = w.service_maps()
    rows: list[Row] = []
    for size in SIZES:
        services = [Service(vip(i), (ServicePort(80, "tcp", backends),)) for i in range(size)]
        start = time.perf_counter()
        maps.sync(services)
        programmed = time.perf_counter() - start
        # No path pays for another's leftovers: kube-proxy's emptied tables keep their base
        # chains hooked (and netfilter's conntrack on), which every packet would traverse.
        w.ns(w.router, "nft", "flush", "ruleset")
        programs.attach(client, "eth0")
        Conntrack(w.pin_dir).forget(w.pods["client"].ip)  # each size starts as the first did
        rows.append(Row(size, "ebpf", connect_rate(connect_loop, client, vip(size - 1), 80,
                                                   CONNECTIONS), programmed,
                        endpoint_change(maps, vip(size - 1), backends)))
        programs.detach(client, "eth0")
        maps.sync([])
        ports = [kubeproxy.ServicePort("default", f"s{i}", "http", "tcp", vip(i), 80, tuple(
            kubeproxy.Backend(b.ip, b.port) for b in backends)) for i in range(size)]
        for mode in kubeproxy.MODES:
            w.ns(w.router, "nft", "flush", "ruleset")
            proxy = kubeproxy.KubeProxy(mode, w.router)
            start = time.perf_counter()
            proxy.sync(ports)
            programmed = time.perf_counter() - start
            rows.append(Row(size, mode, connect_rate(connect_loop, client, vip(size - 1), 80,
                                                     CONNECTIONS), programmed))
            proxy.sync([])
    print(table(rows))
    assert {(r.size, r.path) for r in rows} == {
        (n, p) for n in SIZES for p in ("ebpf", *kubeproxy.MODES)}


def table(rows: list[Row]) -> str:
    by = {(r.size, r.path): r for r in rows}
    lines = [f"\nnew connections/s to the last of N ClusterIPs (best of {BURSTS} x {CONNECTIONS}, "
             "C client); program = time to write N Services; change = one endpoint change",
             f"{'N':>6} {'path':<9} {'conn/s':>9} {'ebpf/x':>7} {'program':>9} {'change':>9}"]
    for r in rows:
        ratio = by[(r.size, "ebpf")].rate / r.rate
        change = f"{r.change_s * 1000:>7.2f}ms" if r.change_s is not None else ""
        lines.append(f"{r.size:>6} {r.path:<9} {r.rate:>9.0f} {ratio:>7.2f} "
                     f"{r.program_s * 1000:>7.1f}ms {change:>9}")
    ebpf = [by[(n, "ebpf")].rate for n in SIZES]
    lines.append(f"ebpf at N={SIZES[-1]} / ebpf at N=1: {ebpf[-1] / ebpf[0]:.2f}")
    return "\n".join(lines)

