"""Seeded loss in real netns: 1,000 numbered UDP datagrams over a veth lose exactly the
drawn ~5 %, the same ones for the same seed, others for another seed."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from podlab.datapath.netlink import in_netns
from podlab.lab.linkfaults import PERIOD, LinkFaults, Match

pytestmark = [pytest.mark.root, pytest.mark.kernel("netns", "veth", "nftables")]
COUNT = 1000
PORT = 5353
SO_RCVBUFFORCE = 33  # <asm/socket.h>; Python does not name it


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """A sender and a receiver netns on one veth, 10.88.0.1 -> 10.88.0.2."""
    names = (f"lf{os.getpid():x}-a", f"lf{os.getpid():x}-b")
    try:
        for name in names:
            sh("ip", "netns", "add", name)
        sh("ip", "-n", names[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", names[1])
        for i, name in enumerate(names):
            sh("ip", "-n", name, "addr", "add", f"10.88.0.{i + 1}/24", "dev", "eth0")
            sh("ip", "-n", name, "link", "set", "eth0", "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def received(sender: str, receiver: str) -> set[int]:
    """Which of COUNT numbered datagrams arrived; the receive buffer holds them all, so
    only the fault can lose one."""
    def bound() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        s.bind(("10.88.0.2", PORT))
        return s

    rx = in_netns(receiver, bound)
    tx = in_netns(sender, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with rx, tx:
        for i in range(COUNT):
            tx.sendto(str(i).encode(), ("10.88.0.2", PORT))
        got = set()
        rx.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while True:
                got.add(int(rx.recv(64)))
    return got


def test_seeded_loss_drops_the_same_datagrams_for_the_same_seed(
        pair: tuple[str, str]) -> None:
    """The sender never sees an error (sendto would raise): the loss is silent."""
    sender, netns = pair
    receiver = netns
    faults = LinkFaults(f"t{os.getpid():x}")
    match = Match(("udp",), "10.88.0.2", PORT)
    try:
        assert received(sender, receiver) == set(range(COUNT))  # no fault, no loss
        lost = []
        for seed in (7, 7, 8):
            fault = faults.add(netns, match, loss=0.05, seed=seed)  # replaced: count restarts
            lost.append(set(range(COUNT)) - received(sender, receiver))
            assert fault.counts() == (COUNT, len(lost[-1]))
            # Exactly the drawn residues of the count (5 % of each period of it).
            assert lost[-1] == {i for i in range(COUNT) if i % PERIOD in fault.drop}
        assert 30 <= len(lost[0]) <= 70
        assert lost[0] == lost[1]
        assert lost[0] != lost[2]
        faults.heal()
        assert received(sender, receiver) == set(range(COUNT))
    finally:
        faults.heal()
    tables = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                            capture_output=True, text=True, check=True).stdout
    assert "faults" not in tables
