"""New-connection rate from a client pod to a ClusterIP, with N Services programmed: the tc
eBPF programs on the pod's eth0 against kube-proxy's iptables and nftables rules in the node
netns, in the same run on the same namespaces; and the time to program the N Services.

N = 1 and 1,000 (PODLAB_BENCH_FULL=1 adds 5,000 and 10,000); for the rules the target is the
last Service, where iptables' linear chain is slowest. Prints rates and ratios; asserts no
time, only that every path served every connection.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from podlab.datapath import kubeproxy
from podlab.datapath.bpf import Service, ServicePort
from podlab.datapath.netlink import in_netns
from tests.e2e.bpf.world import World

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool", "iptables",
                                                   "nftables")]
SIZES = (1, 1000, 5000, 10000) if os.environ.get("PODLAB_BENCH_FULL") == "1" else (1, 1000)
CONNECTIONS = 2000
BURSTS = 3  # the best burst is reported: the machine is shared, noise only slows
WARMUP = 200
BACKENDS = ("b1", "b2")
FIRST_VIP = IPv4Address("10.96.0.1")


@dataclass(frozen=True)
class Row:
    size: int
    path: str
    rate: float      # connections per second
    program_s: float


def vip(i: int) -> str:
    return str(FIRST_VIP + i)


def accept_forever(world: World, pod: str) -> None:
    """A listener that accepts and closes: the kernel's handshake is what is measured."""
    listener = in_netns(world.pods[pod].netns, lambda: socket.create_server(
        (world.pods[pod].ip, 8080), backlog=4096))
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except TimeoutError:
                continue
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    world.cleanups += [lambda: thread.join(5), stop.set]  # run in reverse: stop, then join


def connect_rate(netns: str, ip: str, n: int) -> float:
    """Connections per second from a thread inside the client's netns, best of BURSTS; each
    connection is reset (SO_LINGER 0) so no TIME_WAIT piles up."""
    linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"

    def connect(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.settimeout(3)
                s.connect((ip, 80))
        return count / (time.perf_counter() - start)

    def loop() -> float:
        connect(WARMUP)
        return max(connect(n) for _ in range(BURSTS))

    return in_netns(netns, loop)


@pytest.fixture
def bench_world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        for pod in ("client", *BACKENDS):
            world.add_pod(pod)
        for pod in BACKENDS:
            accept_forever(world, pod)
        yield world
    finally:
        world.close()


def test_new_connection_rate_ebpf_against_kube_proxy(bench_world: World) -> None:
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
        programs.attach(client, "eth0")
        rows.append(Row(size, "ebpf", connect_rate(client, vip(size - 1), CONNECTIONS),
                        programmed))
        programs.detach(client, "eth0")
        maps.sync([])
        ports = [kubeproxy.ServicePort("default", f"s{i}", "http", "tcp", vip(i), 80, tuple(
            kubeproxy.Backend(b.ip, b.port) for b in backends)) for i in range(size)]
        for mode in kubeproxy.MODES:
            proxy = kubeproxy.KubeProxy(mode, w.router)
            start = time.perf_counter()
            proxy.sync(ports)
            programmed = time.perf_counter() - start
            rows.append(Row(size, mode, connect_rate(client, vip(size - 1), CONNECTIONS),
                            programmed))
            proxy.sync([])
    print(table(rows))
    assert {(r.size, r.path) for r in rows} == {
        (n, p) for n in SIZES for p in ("ebpf", *kubeproxy.MODES)}


def table(rows: list[Row]) -> str:
    by = {(r.size, r.path): r for r in rows}
    lines = [f"\nnew connections/s to the last of N ClusterIPs (best of {BURSTS} x {CONNECTIONS}, "
             "Python client); program = time to write N Services",
             f"{'N':>6} {'path':<9} {'conn/s':>9} {'ebpf/x':>7} {'program':>9}"]
    for r in rows:
        ratio = by[(r.size, "ebpf")].rate / r.rate
        lines.append(f"{r.size:>6} {r.path:<9} {r.rate:>9.0f} {ratio:>7.2f} "
                     f"{r.program_s * 1000:>7.1f}ms")
    ebpf = [by[(n, "ebpf")].rate for n in SIZES]
    lines.append(f"ebpf at N={SIZES[-1]} / ebpf at N=1: {ebpf[-1] / ebpf[0]:.2f}")
    return "\n".join(lines)

