"""Socket-level load balancing for clients in a node's own netns, and for no other netns."""

from __future__ import annotations

import socket

import pytest

from podlab.datapath.bpf import Service, ServicePort, counters, netns_cookie
from tests.e2e.bpf.conftest import BACKENDS, Setup
from tests.e2e.bpf.world import SERVICE_CIDR, VIP, names, socket_in, tcp_connect, tcp_hello, udp_ask

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool", "cgroup2-bpf")]


@pytest.fixture
def node(lb: Setup) -> Setup:
    w = lb.world
    lb.maps.sync([Service(VIP, (
        ServicePort(80, "tcp", tuple(w.backend(b) for b in BACKENDS)),
        ServicePort(53, "udp", tuple(w.backend(b) for b in BACKENDS)),
        ServicePort(81, "tcp", ())))])
    lb.programs.attach_sockets()
    lb.programs.serve_netns(w.router)
    return lb


def peer_after_udp_connect(netns: str | None) -> str:
    """Where a connected UDP socket points: connect() sends nothing, so this only shows
    whether the hook rewrote the address."""
    with socket_in(netns, socket.SOCK_DGRAM) as sock:
        sock.connect((VIP, 53))
        peer: str = sock.getpeername()[0]
        return peer


def test_a_node_netns_client_reaches_the_backends(node: Setup) -> None:
    router = node.world.router
    lines = [tcp_hello(router, VIP, 80) for _ in range(60)]
    assert set(names(lines)) == set(BACKENDS)
    answers = [udp_ask(router, VIP, 53) for _ in range(30)]
    assert {source for _, source in answers} == {(VIP, 53)}  # recvmsg shows the VIP
    assert set(names([a for a, _ in answers])) == set(BACKENDS)
    with pytest.raises(ConnectionRefusedError):  # no backends: refused, as kube-proxy does
        tcp_connect(router, VIP, 81, timeout=1)
    seen = counters(node.world.pin_dir)
    assert seen["sock_translated"] >= 90
    assert seen["sock_rejected"] >= 1


def test_other_netns_and_the_host_are_untouched(node: Setup) -> None:
    w = node.world
    assert peer_after_udp_connect(w.router) in {w.pods[b].ip for b in BACKENDS}
    other = w.add_netns("other")
    w.ns(other, "ip", "route", "add", SERVICE_CIDR, "dev", "lo")
    assert peer_after_udp_connect(other) == VIP
    assert peer_after_udp_connect(None) == VIP  # the host (this process's netns)


def test_unserving_a_netns_and_removing_the_pins_stop_the_hooks(node: Setup) -> None:
    w = node.world
    w.ns(w.router, "ip", "route", "add", SERVICE_CIDR, "dev", "lo")  # so that connect() works
    node.programs.unserve_netns(netns_cookie(w.router))
    assert peer_after_udp_connect(w.router) == VIP
    node.programs.serve_netns(w.router)
    for link in (w.pin_dir / "links").iterdir():
        link.unlink()
    assert peer_after_udp_connect(w.router) == VIP
