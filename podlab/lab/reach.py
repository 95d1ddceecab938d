"""Who reaches whom: every ordered pair of pods probed on every port and protocol at once,
as upstream's netpol e2e tests and cyclonus probe their model (`podlab reach`).

Each probe's socket is made inside its source pod's netns (a socket keeps the netns it was
made in), then all of them are driven non-blocking by one selector against one deadline:
a matrix of hundreds of probes takes about one timeout. TCP counts as connected once the
handshake completes; UDP once the target's echo answers (sent again every UDP_RESEND, a
datagram being allowed to get lost). A pod probing itself is included (loopback).
"""

from __future__ import annotations

import errno
import functools
import selectors
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from podlab.datapath.netlink import in_netns
from podlab.lab.errors import LabError
from podlab.lab.reachability import Matrix, Probe, all_probes

if TYPE_CHECKING:
    from podlab.lab.kube.manifests import LabApi
    from podlab.lab.state import LabState

TIMEOUT = 1.0  # seconds: for a TCP handshake, or a UDP echo, of every probe at once
UDP_RESEND = 0.2
UDP_PAYLOAD = b"podlab-reach"
WAVE = 512  # probes in flight at once: their sockets stay under the usual 1,024 open files


@dataclass(frozen=True)
class PodTarget:
    """A pod as a probe needs it: its name (`namespace/name`), address and netns."""

    name: str
    ip: str
    netns: str


def lab_pods(state: LabState, api: LabApi, namespaces: Iterable[str]) -> list[PodTarget]:
    """The Running pods of `namespaces` (in that order, then by name): their address as
    the API reports it, their netns from the lab's state."""
    found = []
    for namespace in namespaces:
        for name, pod in sorted(api.pods(namespace).items()):
            status = pod.get("status") or {}
            if status.get("phase") != "Running" or not status.get("podIP"):
                continue
            try:
                netns = state.pod(namespace, name).netns
            except KeyError:
                raise LabError(f"pod {namespace}/{name} runs, but lab {state.name!r} has no "
                               f"sandbox for it; `podlab status --name {state.name}` lists "
                               "the lab's pods") from None
            found.append(PodTarget(f"{namespace}/{name}", str(status["podIP"]), netns))
    return found


def probe_matrix(pods: Sequence[PodTarget], ports: Iterable[int], protocols: Iterable[str],
                 timeout: float = TIMEOUT) -> Matrix:
    """Every ordered pair of `pods` on every port and protocol ("tcp", "udp")."""
    by_name = {p.name: p for p in pods}
    names, ports, protocols = tuple(by_name), tuple(ports), tuple(protocols)
    probes = list(all_probes(names, ports, protocols))
    connected: dict[Probe, bool] = {}
    for start in range(0, len(probes), WAVE):
        connected.update(_wave(probes[start:start + WAVE], by_name, timeout))
    return Matrix(names, ports, protocols, connected)


def _sockets(protocols: list[str]) -> list[socket.socket]:
    return [socket.socket(socket.AF_INET,
                          socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
            for proto in protocols]


def _wave(probes: list[Probe], pods: dict[str, PodTarget], timeout: float
          ) -> dict[Probe, bool]:
    results: dict[Probe, bool] = {}
    pending: dict[socket.socket, Probe] = {}
    selector = selectors.DefaultSelector()

    def finish(sock: socket.socket, connected: bool) -> None:
        selector.unregister(sock)
        results[pending.pop(sock)] = connected
        sock.close()

    try:
        for source in dict.fromkeys(p.source for p in probes):
            mine = [p for p in probes if p.source == source]
            made = in_netns(pods[source].netns,
                            functools.partial(_sockets, [p.protocol for p in mine]))
            pending.update(zip(made, mine, strict=True))
            for sock, probe in zip(made, mine, strict=True):
                udp = probe.protocol == "udp"
                selector.register(sock, selectors.EVENT_READ if udp else selectors.EVENT_WRITE)
                if not _start(sock, (pods[probe.target].ip, probe.port), udp):
                    finish(sock, False)
        deadline = time.monotonic() + timeout
        resend = time.monotonic() + UDP_RESEND
        while pending and (now := time.monotonic()) < deadline:
            for key, _ in selector.select(min(deadline, resend) - now):
                sock = cast(socket.socket, key.fileobj)
                finish(sock, _answered(sock, pending[sock].protocol))
            if time.monotonic() >= resend:
                resend += UDP_RESEND
                for sock in [s for s, p in pending.items() if p.protocol == "udp"]:
                    if not _send(sock):
                        finish(sock, False)
    finally:
        selector.close()
        for sock, probe in pending.items():  # no answer before the deadline
            results[probe] = False
            sock.close()
    return results


def _start(sock: socket.socket, address: tuple[str, int], udp: bool) -> bool:
    """Begin the probe; False if it failed at once (no route, say)."""
    sock.setblocking(False)
    if not udp:
        return sock.connect_ex(address) in (0, errno.EINPROGRESS)
    try:
        sock.connect(address)  # so that the peer's ICMP port unreachable is reported
    except OSError:
        return False
    return _send(sock)


def _send(sock: socket.socket) -> bool:
    """Send the echo request; False if the socket reports an error (an earlier datagram's
    ICMP port unreachable: refused)."""
    try:
        sock.send(UDP_PAYLOAD)
    except OSError:
        return False
    return True


def _answered(sock: socket.socket, protocol: str) -> bool:
    if protocol != "udp":
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    try:
        return sock.recv(2048) == UDP_PAYLOAD
    except OSError:
        return False  # refused: the port is not served
