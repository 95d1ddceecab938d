"""New-connection rate, measured the same way by every datapath bench: a C connect loop in
the client's netns against a listener that only accepts and closes."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from podlab.datapath.netlink import in_netns
from tests.e2e.bpf.world import World

BURSTS = 3  # the best burst is reported: the machine is shared, noise only slows
WARMUP = 200
CONNECT_LOOP = Path(__file__).parent / "tools" / "connect_loop.c"


def build_connect_loop(directory: Path) -> Path:
    """tools/connect_loop.c, compiled: a Python client costs ~40 us a connection, which
    hides the datapath's own cost (the issue's figures came from a C loop too)."""
    binary = directory / "connect_loop"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(CONNECT_LOOP)],
                   check=True, capture_output=True)
    return binary


def connect_rate(loop: Path, netns: str, ip: str, port: int, n: int) -> float:
    """Connections per second from inside the client's netns, best of BURSTS."""
    out = subprocess.run(["ip", "netns", "exec", netns, str(loop), ip, str(port), str(n),
                          str(BURSTS), str(WARMUP)], capture_output=True, text=True,
                         check=True, timeout=300)
    return float(out.stdout)


def accept_forever(world: World, pod: str, port: int) -> None:
    """A listener that accepts and closes: the kernel's handshake is what is measured."""
    listener = in_netns(world.pods[pod].netns, lambda: socket.create_server(
        (world.pods[pod].ip, port), backlog=4096))
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
