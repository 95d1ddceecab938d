"""ClusterIP load balancing by the tc programs on the client pod's own eth0, real traffic."""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest

from podlab.datapath.bpf import Conntrack, Service, ServicePort, Timeouts, counters
from tests.e2e.bpf.conftest import BACKENDS, Setup
from tests.e2e.bpf.world import (
    VIP,
    abort,
    deadline_poll,
    names,
    read_line,
    tcp_connect,
    tcp_hello,
    udp_ask,
    udp_connected,
)

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool")]


def web(lb: Setup, *backends: str, udp: bool = False, affinity: int = 0) -> Service:
    ports = [ServicePort(80, "tcp", tuple(lb.world.backend(b) for b in backends), "http")]
    if udp:
        ports.append(ServicePort(53, "udp", tuple(lb.world.backend(b) for b in backends), "dns"))
    return Service(VIP, tuple(ports), affinity_timeout=affinity, namespace="default", name="web")


def uniform(counts: Counter[str], n: int, k: int) -> float:
    """p-value of a chi-square test against k equally likely outcomes (k = 3: 2 dof)."""
    stat = sum((counts[name] - n / k) ** 2 / (n / k) for name in BACKENDS[:k])
    assert k == 3
    return math.exp(-stat / 2)


def test_tcp_spreads_evenly_and_backends_see_the_client_ip(lb: Setup) -> None:
    lb.maps.sync([web(lb, *BACKENDS)])
    lines = [tcp_hello(lb.world.pods["client"].netns, VIP, 80) for _ in range(300)]
    counts = Counter(names(lines))
    assert set(counts) == set(BACKENDS)
    assert uniform(counts, 300, 3) > 1e-3, counts
    client_ip = lb.world.pods["client"].ip
    assert {line.split()[1].split(":")[0] for line in lines} == {client_ip}
    assert counters(lb.world.pin_dir)["new_connection"] >= 300


def test_udp_spreads_and_replies_come_from_the_vip(lb: Setup) -> None:
    lb.maps.sync([web(lb, *BACKENDS, udp=True)])
    client = lb.world.pods["client"]
    answers = [udp_ask(client.netns, VIP, 53) for _ in range(300)]
    assert {source for _, source in answers} == {(VIP, 53)}
    counts = Counter(names([a for a, _ in answers]))
    assert uniform(counts, 300, 3) > 1e-3, counts
    assert {a.split()[1].split(":")[0] for a, _ in answers} == {client.ip}


def test_several_ports_each_with_its_own_target_port(lb: Setup) -> None:
    lb.world.serve("b1", 9090, name="b1-admin")
    w = lb.world
    svc = Service(VIP, (ServicePort(80, "tcp", (w.backend("b1"),)),
                        ServicePort(81, "tcp", (w.backend("b1", 9090),)),
                        ServicePort(80, "udp", (w.backend("b2"),))))
    lb.maps.sync([svc])
    netns = w.pods["client"].netns
    assert names([tcp_hello(netns, VIP, 80)]) == ["b1"]
    assert names([tcp_hello(netns, VIP, 81)]) == ["b1-admin"]
    assert names([udp_ask(netns, VIP, 80)[0]]) == ["b2"]


def test_a_service_without_backends_is_rejected_at_once(lb: Setup) -> None:
    lb.maps.sync([web(lb, udp=True)])
    netns = lb.world.pods["client"].netns
    with pytest.raises(ConnectionRefusedError):
        tcp_connect(netns, VIP, 80, timeout=2)
    with pytest.raises(ConnectionRefusedError):
        udp_ask(netns, VIP, 53, sock=udp_connected(netns, VIP, 53), timeout=2)
    seen = counters(lb.world.pin_dir)
    assert seen["reject_tcp"] >= 1
    assert seen["reject_udp"] >= 1



def test_icmp_errors_about_a_translated_flow_are_translated_back(lb: Setup) -> None:
    # b1 has no UDP socket on 5353: it answers with port unreachable about client -> b1,
    # which the client's kernel matches to its socket only once it quotes client -> VIP.
    lb.maps.sync([Service(VIP, (ServicePort(53, "udp", (lb.world.backend("b1", 5353),)),))])
    netns = lb.world.pods["client"].netns
    with pytest.raises(ConnectionRefusedError):
        udp_ask(netns, VIP, 53, sock=udp_connected(netns, VIP, 53), timeout=2)
    assert counters(lb.world.pin_dir)["icmp_translated"] >= 1


def test_client_ip_affinity_holds_then_times_out(lb: Setup) -> None:
    timeout = 1
    lb.maps.sync([web(lb, *BACKENDS, affinity=timeout)])
    netns = lb.world.pods["client"].netns
    first = names([tcp_hello(netns, VIP, 80) for _ in range(20)])
    assert len(set(first)) == 1, first
    # Once idle past the timeout a new connection picks afresh: some pick differs.
    picks: list[str] = []
    end = time.monotonic() + 20
    while time.monotonic() < end and set(picks) <= set(first[:1]):
        idle_until = time.monotonic() + timeout + 0.2
        while time.monotonic() < idle_until:
            time.sleep(0.05)
        picks += names([tcp_hello(netns, VIP, 80)])
    assert set(picks) - set(first[:1]), picks


def test_hairpin_a_pod_reaching_itself_through_its_service(lb: Setup) -> None:
    w = lb.world
    w.serve("client")
    lb.maps.sync([Service(VIP, (ServicePort(80, "tcp", (w.backend("client"),)),
                                ServicePort(53, "udp", (w.backend("client"),))))])
    netns = w.pods["client"].netns
    sock, line = tcp_connect(netns, VIP, 80)
    name, peer = line.split()
    # The pod as backend sees the VIP (its own address would be a martian); as client it
    # talks to the VIP throughout, so its socket matches every reply.
    assert (name, peer.split(":")[0]) == ("client", VIP)
    sock.sendall(b"again\n")
    assert read_line(sock).split()[0] == "client"
    sock.close()
    answer, source = udp_ask(netns, VIP, 53)
    assert (answer.split()[0], source) == ("client", (VIP, 53))
    assert counters(w.pin_dir)["hairpin"] >= 4


@pytest.mark.parametrize("affinity", [0, 60], ids=["random", "client-ip-affinity"])
def test_a_removed_backend_keeps_its_connections_and_gets_no_new_ones(
        lb: Setup, affinity: int) -> None:
    lb.maps.sync([web(lb, *BACKENDS, affinity=affinity)])
    netns = lb.world.pods["client"].netns
    kept = []
    for _ in range(30):
        sock, line = tcp_connect(netns, VIP, 80)
        kept.append((sock, line.split()[0]))
    removed = kept[0][1]
    lb.maps.sync([web(lb, *(b for b in BACKENDS if b != removed), affinity=affinity)])
    for sock, name in kept:
        sock.sendall(b"still there?\n")
        assert read_line(sock).split()[0] == name
        sock.close()
    after = names([tcp_hello(netns, VIP, 80) for _ in range(60)])
    if affinity:  # the client moves to one live backend and stays there
        assert len(set(after)) == 1
        assert removed not in after
    else:
        assert set(after) == set(BACKENDS) - {removed}


def test_an_expired_udp_flow_does_not_pin_its_tuple_to_an_old_backend(lb: Setup) -> None:
    ct = Conntrack(lb.world.pin_dir)
    ct.set_timeouts(Timeouts(udp=1))
    lb.maps.sync([web(lb, *BACKENDS, udp=True)])
    netns = lb.world.pods["client"].netns
    sock = udp_connected(netns, VIP, 53, sport=40000)
    old = names([udp_ask(netns, VIP, 53, sock=sock)[0]])[0]
    lb.maps.sync([web(lb, *(b for b in BACKENDS if b != old), udp=True)])
    # Within its timeout the flow keeps its backend, removed or not...
    assert names([udp_ask(netns, VIP, 53, sock=sock)[0]]) == [old]
    # ...and once idle past it, the same tuple is a new flow.
    assert deadline_poll(lambda: all(c.expires_in < 0 for c in ct.connections()), 5)
    assert names([udp_ask(netns, VIP, 53, sock=sock)[0]]) != [old]
    ct.close()


def test_a_tcp_tuple_reused_after_reset_picks_a_live_backend(lb: Setup) -> None:
    lb.maps.sync([web(lb, *BACKENDS)])
    netns = lb.world.pods["client"].netns
    sock, line = tcp_connect(netns, VIP, 80, sport=40001)
    old = line.split()[0]
    abort(sock)  # RST: the entry is closing, so the next SYN on the tuple is a new connection
    lb.maps.sync([web(lb, *(b for b in BACKENDS if b != old))])
    sock, line = tcp_connect(netns, VIP, 80, sport=40001)
    abort(sock)
    assert line.split()[0] != old


def test_gc_removes_expired_entries_only(lb: Setup) -> None:
    ct = Conntrack(lb.world.pin_dir)
    ct.set_timeouts(Timeouts(udp=1))
    lb.maps.sync([web(lb, *BACKENDS, udp=True)])
    netns = lb.world.pods["client"].netns
    udp_ask(netns, VIP, 53)
    held, _ = tcp_connect(netns, VIP, 80)
    assert {c.protocol for c in ct.connections()} == {"tcp", "udp"}
    assert deadline_poll(lambda: any(c.expires_in < 0 for c in ct.connections()), 5)
    assert ct.gc() == 4  # the UDP flow: both directions, and the policy's entry at each end
    assert [c.protocol for c in ct.connections()] == ["tcp"]
    held.close()
    ct.close()
