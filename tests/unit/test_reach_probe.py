"""The prober's socket handling, without root: every "pod" is this host's loopback (the
netns step is bypassed), so a TCP listener, a UDP echo and a UDP socket that never answers
stand for a served port, an echo and a dropped datagram. The lab's e2e test
(tests/e2e/test_reach.py) probes real pods."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from podlab.lab import reach
from podlab.lab.reach import PodTarget, probe_matrix

PODS = [PodTarget(name, "127.0.0.1", "unused") for name in ("x/a", "x/b", "y/a", "y/b")]


@pytest.fixture(autouse=True)
def here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reach, "in_netns", lambda _netns, work: work())


def bound(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def echoing(udp: socket.socket, lose_first: bool = False) -> Iterator[None]:
    """An echo of `udp`'s datagrams while in the block, then `udp` closed; `lose_first`:
    not of the first from each peer, as a lossy network would."""
    def echo() -> None:
        heard: set[object] = set()
        while True:
            data, peer = udp.recvfrom(2048)
            if peer is None:  # shut down
                return
            if not lose_first or peer in heard:
                udp.sendto(data, peer)
            heard.add(peer)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # not connected; it wakes the echo all the same
            udp.shutdown(socket.SHUT_RDWR)
        udp.close()
        thread.join()


@pytest.fixture
def served() -> Iterator[int]:
    """A port served over TCP (a listener: the kernel completes the handshakes) and UDP
    (an echo)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as tcp:
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))
        with echoing(udp):
            yield port


def test_a_served_port_connects_and_an_unserved_one_does_not(served: int) -> None:
    closed = bound(socket.SOCK_STREAM)  # bound, not listening: no TCP and no UDP there
    unserved = closed.getsockname()[1]
    with closed:
        m = probe_matrix(PODS, [served, unserved], ["tcp", "udp"])
    assert len(m.connected) == 4 * 4 * 2 * 2
    assert {(p.port, v) for p, v in m.connected.items()} == {(served, True), (unserved, False)}


def test_probes_that_get_no_answer_share_one_deadline(monkeypatch: pytest.MonkeyPatch,
                                                      served: int) -> None:
    silent = bound(socket.SOCK_DGRAM)  # takes datagrams, answers none: a drop
    monkeypatch.setattr(reach, "WAVE", 20)  # 32 probes: two waves
    timeout, dropped = 0.3, silent.getsockname()[1]
    with silent:
        started = time.monotonic()
        m = probe_matrix(PODS, [dropped, served], ["udp"], timeout)
        took = time.monotonic() - started
    assert {(p.port, v) for p, v in m.connected.items()} == {(dropped, False), (served, True)}
    assert len(m.connected) == 32
    assert took < 6 * timeout  # one deadline per wave, not one per probe (16 x timeout)


def test_a_lost_datagram_is_sent_again() -> None:
    udp = bound(socket.SOCK_DGRAM)
    with echoing(udp, lose_first=True):
        m = probe_matrix(PODS[:2], [udp.getsockname()[1]], ["udp"])
    assert list(m.connected.values()) == [True] * 4
