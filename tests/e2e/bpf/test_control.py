"""Updates, capacity, attach state and adoption of the pinned datapath by another process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from podlab.datapath.bpf import (
    Backend,
    Frontend,
    MapFull,
    Programs,
    Service,
    ServiceMaps,
    ServicePort,
    bpffs,
    counters,
)
from tests.e2e.bpf.conftest import BACKENDS, Setup
from tests.e2e.bpf.world import VIP, World, names, read_line, tcp_connect, tcp_hello

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool")]


def svc(lb: Setup, *backends: str, vip: str = VIP) -> Service:
    return Service(vip, (ServicePort(80, "tcp", tuple(lb.world.backend(b) for b in backends)),))


def test_an_update_is_atomic_no_connection_sees_half_a_backend_set(lb: Setup) -> None:
    # Sets of different sizes: a pick made with one set's count among another's slots
    # would find no slot and drop the SYN (counted), or reach a backend of neither set.
    small, large = svc(lb, "b1"), svc(lb, "b2", "b3")
    lb.maps.sync([small])
    stop = threading.Event()
    syncs = 0

    def flip() -> None:
        nonlocal syncs
        while not stop.is_set():
            lb.maps.sync([large if syncs % 2 == 0 else small])
            syncs += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        seen = names([tcp_hello(lb.world.pods["client"].netns, VIP, 80) for _ in range(400)])
    finally:
        stop.set()
        flipper.join()
    assert syncs > 100
    assert set(seen) == set(BACKENDS)
    assert counters(lb.world.pin_dir)["drop_no_backend_slot"] == 0


def test_a_sync_that_would_overflow_is_refused_and_changes_nothing(world: World) -> None:
    for name in ("client", *BACKENDS):
        world.add_pod(name)
    for name in BACKENDS:
        world.serve(name)
    pin_dir = world.bpffs / "small"
    progs = world.programs(pin_dir, capacities={"lb_backends": 4, "lb_members": 4})
    progs.attach(world.pods["client"].netns, "eth0")
    maps = world.service_maps(pin_dir)
    one = Service(VIP, (ServicePort(80, "tcp", (world.backend("b1"),)),))
    maps.sync([one])
    before = dict(maps.state)
    # `one` moved to b2 (fits) and a second Service of four backends (does not: 1 + 4 > 4
    # slots): refused as a whole, before `one` is touched.
    four = tuple(Backend(f"10.77.9.{i}", 8080) for i in range(1, 5))
    big = [Service(VIP, (ServicePort(80, "tcp", (world.backend("b2"),)),)),
           Service("10.96.0.11", (ServicePort(80, "tcp", four),))]
    with pytest.raises(MapFull) as refused:
        maps.sync(big)
    assert (refused.value.map_name, refused.value.capacity) == ("lb_backends", 4)
    assert maps.state == before
    assert world.service_maps(pin_dir).state == before  # what the maps hold, read back
    assert names([tcp_hello(world.pods["client"].netns, VIP, 80)]) == ["b1"]
    with pytest.raises(OSError, match="unreachable"):  # the refused service is not there
        tcp_hello(world.pods["client"].netns, "10.96.0.11", 80)
    maps.sync([one, Service("10.96.0.11", (ServicePort(80, "tcp", four[:3]),))])  # 4 fit
    assert maps.state.keys() == {Frontend(VIP, 80, "tcp"), Frontend("10.96.0.11", 80, "tcp")}


def test_attached_reports_the_programs_and_detach_removes_them(lb: Setup) -> None:
    netns = lb.world.pods["client"].netns
    lb.maps.sync([svc(lb, "b1")])
    assert lb.programs.attached(netns, "eth0")
    lb.programs.attach(netns, "eth0")  # a repeat replaces: still one filter, still ours
    assert lb.programs.attached(netns, "eth0")
    stranger = lb.world.programs(lb.world.bpffs / "other")  # another load: other programs
    stranger.attach(netns, "eth0")
    assert not lb.programs.attached(netns, "eth0")
    lb.programs.attach(netns, "eth0")
    assert lb.programs.attached(netns, "eth0")
    lb.programs.detach(netns, "eth0")
    lb.programs.detach(netns, "eth0")
    assert not lb.programs.attached(netns, "eth0")
    with pytest.raises(OSError, match="unreachable"):  # nothing translates the VIP now
        tcp_connect(netns, VIP, 80, timeout=1)
    assert not lb.programs.attached(netns, "nosuchdev")


ADOPTER = """
import json, sys
from podlab.datapath.bpf import Programs, Service, ServiceMaps, ServicePort, Backend
pin_dir, netns, vip, backend = sys.argv[1:]
progs = Programs.load(pin_dir)
maps = ServiceMaps(pin_dir)
adopted = {str(f.cluster_ip): [b.ip for b in p.backends] for f, p in maps.state.items()}
maps.sync([Service(vip, (ServicePort(80, "tcp", (Backend(backend, 8080),)),))])
print(json.dumps({"attached": progs.attached(netns, "eth0"), "adopted": adopted}))
"""


def test_a_second_process_adopts_the_pinned_maps_and_traffic_goes_on(lb: Setup) -> None:
    w = lb.world
    netns = w.pods["client"].netns
    lb.maps.sync([svc(lb, "b1")])
    held, line = tcp_connect(netns, VIP, 80)
    assert line.split()[0] == "b1"
    progs_dirs = sorted(p.name for p in w.pin_dir.iterdir())
    lb.programs.close()  # this process lets go; only the pins hold the datapath now
    lb.maps.close()
    proc = subprocess.run([sys.executable, "-c", ADOPTER, str(w.pin_dir), netns, VIP,
                           w.pods["b2"].ip], capture_output=True, text=True, timeout=60,
                          check=False, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"attached": True, "adopted": {VIP: [w.pods["b1"].ip]}}
    assert sorted(p.name for p in w.pin_dir.iterdir()) == progs_dirs  # nothing reloaded
    held.sendall(b"still b1?\n")
    assert read_line(held).split()[0] == "b1"
    held.close()
    assert names([tcp_hello(netns, VIP, 80)]) == ["b2"]


def test_bpffs_mount_is_idempotent_and_unmount_removes_it_and_its_pins(tmp_path: Path) -> None:
    point = tmp_path / "run" / "lab" / "bpf"
    bpffs.mount(point)
    bpffs.mount(point)
    assert bpffs.mounts_under(tmp_path) == [point]
    Programs.load(point / "n1").close()
    assert bpffs.unmount(tmp_path / "run") == [point]
    assert not point.exists()
    assert bpffs.mounts_under(tmp_path) == []
    assert bpffs.unmount(tmp_path / "run") == []


def test_update_rewrites_one_cluster_ip_and_leaves_the_others(lb: Setup) -> None:
    other = "10.96.0.11"
    lb.maps.sync([svc(lb, "b1"), svc(lb, "b2", vip=other)])
    untouched = lb.maps.state[Frontend(other, 80, "tcp")]
    stats = lb.maps.update(VIP, svc(lb, "b3"))
    assert (stats.written, stats.removed) == (1, 0)
    assert lb.maps.state[Frontend(other, 80, "tcp")] == untouched
    netns = lb.world.pods["client"].netns
    assert names([tcp_hello(netns, VIP, 80), tcp_hello(netns, other, 80)]) == ["b3", "b2"]
    assert lb.maps.update(other, None).removed == 1
    assert set(ServiceMaps(lb.world.pin_dir).state) == {Frontend(VIP, 80, "tcp")}
    with pytest.raises(ValueError, match="another ClusterIP"):
        lb.maps.update(other, svc(lb, "b1"))
