"""Plain network namespaces for the eBPF datapath: pods on veth pairs into a router ("node")
netns, servers and clients as sockets of this process made inside those netns.

A socket stays in the netns it was created in, so a thread enters the netns to create it
(`in_netns`) and the test drives it from its own thread: no exec per connection, and the
servers report the peer address they saw.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from podlab.datapath.bpf import Backend, Programs, ServiceMaps, bpffs
from podlab.datapath.netlink import in_netns

SERVICE_CIDR = "10.96.0.0/16"
VIP = "10.96.0.10"
_ids = itertools.count(1)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def deadline_poll(condition: Callable[[], bool], timeout: float = 10.0,
                  every: float = 0.02) -> bool:
    """Poll `condition` until true or `timeout` passes; the result of the last poll."""
    end = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(every)


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    gateway: str
    index: int


@dataclass
class Server:
    """TCP and UDP on (ip, port) in a pod: answers `<name> <peer ip>:<peer port>` to each
    connection (and to each line on it) and to each datagram; records the peers."""

    name: str
    tcp: socket.socket
    udp: socket.socket | None
    peers: list[tuple[str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, peer: tuple[str, int]) -> bytes:
        return f"{self.name} {peer[0]}:{peer[1]}\n".encode()

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.tcp, selectors.EVENT_READ)
        if self.udp is not None:
            sel.register(self.udp, selectors.EVENT_READ)
        conns: dict[socket.socket, tuple[str, int]] = {}
        while not self.stop.is_set():
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.tcp:
                    conn, peer = self.tcp.accept()
                    self.peers.append(peer)
                    conns[conn] = peer
                    sel.register(conn, selectors.EVENT_READ)
                    conn.sendall(self.answer(peer))
                elif sock is self.udp:
                    data, peer = sock.recvfrom(2048)
                    self.peers.append(peer)
                    sock.sendto(self.answer(peer), peer)
                else:
                    try:
                        data = sock.recv(2048)
                    except OSError:
                        data = b""
                    if data:
                        sock.sendall(self.answer(conns[sock]))
                    else:
                        sel.unregister(sock)
                        sock.close()
                        del conns[sock]
        for sock in [*conns, self.tcp, *([self.udp] if self.udp else [])]:
            sock.close()


class World:
    """A router netns and pods attached to it; everything is removed by close()."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"bpf{os.getpid():x}x{next(_ids)}"
        self.router = f"{self.prefix}-node"
        self.pods: dict[str, Pod] = {}
        self.servers: list[Server] = []
        self._threads: list[threading.Thread] = []
        self._netns = [self.router]
        sh("ip", "netns", "add", self.router)
        self.ns(self.router, "ip", "link", "set", "lo", "up")
        self.ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.bpffs = bpffs.mount(tmp / "bpffs")
        self.pin_dir = self.bpffs / "node"
        self._programs: list[Programs] = []
        self._maps: list[ServiceMaps] = []
        self.cleanups: list[Callable[[], object]] = []  # run first by close()

    def ns(self, netns: str, *argv: str) -> None:
        sh("ip", "netns", "exec", netns, *argv)

    def add_pod(self, name: str) -> Pod:
        """A pod netns with eth0 (10.77.<i>.2/24, gateway .1 on the router) and TX checksum
        offload off on both ends, so a wrong L4 checksum is dropped and not hidden."""
        index = len(self.pods) + 1
        netns = f"{self.prefix}-{name}"
        pod = Pod(name, netns, f"10.77.{index}.2", f"10.77.{index}.1", index)
        sh("ip", "netns", "add", netns)
        self._netns.append(netns)
        peer = f"v{name}"
        self.ns(self.router, "ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0",
                "netns", netns)
        self.ns(self.router, "ip", "addr", "add", f"{pod.gateway}/24", "dev", peer)
        self.ns(self.router, "ip", "link", "set", peer, "up")
        self.ns(self.router, "ethtool", "-K", peer, "tx", "off")
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{pod.ip}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"],
                     # Via the gateway: a device route would ARP for the VIP and never send.
                     ["ip", "route", "add", "default", "via", pod.gateway],
                     ["ethtool", "-K", "eth0", "tx", "off"]):
            self.ns(netns, *argv)
        self.pods[name] = pod
        return pod

    def add_netns(self, name: str) -> str:
        netns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", netns)
        self._netns.append(netns)
        self.ns(netns, "ip", "link", "set", "lo", "up")
        return netns

    def programs(self, pin_dir: Path | None = None,
                 capacities: dict[str, int] | None = None) -> Programs:
        progs = Programs.load(pin_dir or self.pin_dir, capacities)
        self._programs.append(progs)
        return progs

    def service_maps(self, pin_dir: Path | None = None) -> ServiceMaps:
        maps = ServiceMaps(pin_dir or self.pin_dir)
        self._maps.append(maps)
        return maps

    def serve(self, pod: str, port: int = 8080, udp: bool = True, ip: str | None = None,
              name: str | None = None) -> Server:
        p = self.pods[pod]
        addr = ip or p.ip

        def sockets() -> tuple[socket.socket, socket.socket | None]:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((addr, port))
            tcp.listen(512)
            u = None
            if udp:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.bind((addr, port))
            return tcp, u

        tcp, u = in_netns(p.netns, sockets)
        server = Server(name or pod, tcp, u)
        thread = threading.Thread(target=server.serve, name=f"server-{pod}", daemon=True)
        thread.start()
        self.servers.append(server)
        self._threads.append(thread)
        return server

    def backend(self, pod: str, port: int = 8080) -> Backend:
        return Backend(self.pods[pod].ip, port)

    def close(self) -> None:
        """Every step runs even when one fails: servers, fds, the bpffs, the netns."""
        with contextlib.ExitStack() as steps:
            for netns in self._netns:
                steps.callback(subprocess.run, ["ip", "netns", "del", netns], check=False,
                               capture_output=True)
            steps.callback(bpffs.unmount, self.bpffs)
            for progs in self._programs:
                steps.callback(progs.close)
            for maps in self._maps:
                steps.callback(maps.close)
            for thread in self._threads:
                steps.callback(thread.join, 5)
            for server in self.servers:
                server.stop.set()
            for cleanup in self.cleanups:
                steps.callback(cleanup)

def socket_in(netns: str | None, kind: int = socket.SOCK_STREAM) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_INET, kind)
    return in_netns(netns, lambda: socket.socket(socket.AF_INET, kind))


def tcp_connect(netns: str, ip: str, port: int, *, sport: int = 0,
                timeout: float = 3.0) -> tuple[socket.socket, str]:
    """A connected socket and the server's first line (`<name> <peer>`)."""
    sock = socket_in(netns)
    sock.settimeout(timeout)
    if sport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", sport))
    try:
        sock.connect((ip, port))
        return sock, read_line(sock)
    except BaseException:
        sock.close()
        raise


def read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data.decode().strip()


def tcp_hello(netns: str, ip: str, port: int) -> str:
    """One connection: the server's answer; closed with RST, so no TIME_WAIT piles up."""
    sock, line = tcp_connect(netns, ip, port)
    abort(sock)
    return line


def abort(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def udp_ask(netns: str, ip: str, port: int, *, sock: socket.socket | None = None,
            timeout: float = 3.0) -> tuple[str, tuple[str, int]]:
    """One datagram to (ip, port): the answer and the address it came from."""
    own = sock is None
    s = sock or socket_in(netns, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"?", (ip, port))
        data, source = s.recvfrom(2048)
        return data.decode().strip(), source
    finally:
        if own:
            s.close()


def udp_connected(netns: str, ip: str, port: int, *, sport: int = 0) -> socket.socket:
    """A connected UDP socket: only those are told of ICMP errors."""
    sock = socket_in(netns, socket.SOCK_DGRAM)
    if sport:
        sock.bind(("0.0.0.0", sport))
    sock.connect((ip, port))
    return sock


def names(lines: Iterator[str] | list[str]) -> list[str]:
    return [line.split()[0] for line in lines]
