"""`podlab probe`: can pod FROM reach TO? A connection made from inside FROM's netns, to a
pod, a Service (`svc/ns/name`, by its ClusterIP) or an IP; over TCP it asks HTTP
`/hostname`, so the answer names the pod that served it (a Service picks one).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import asdict, dataclass
from typing import Any

from podlab.datapath.netlink import in_netns

TIMEOUT = 2.0
UDP_PAYLOAD = b"podlab-probe"


@dataclass(frozen=True)
class ProbeResult:
    source: str
    target: str
    address: str
    port: int
    proto: str
    ok: bool
    reason: str  # "connected", "refused", "timeout", "unreachable", ...
    answered_by: str = ""  # the pod's /hostname, when HTTP answered

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(netns: str, address: str, port: int, proto: str) -> tuple[bool, str, str]:
    """(ok, reason, answered_by) for one connection from inside `netns`."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    sock = in_netns(netns, lambda: socket.socket(socket.AF_INET, kind))
    sock.settimeout(TIMEOUT)
    try:
        if proto == "udp":
            sock.sendto(UDP_PAYLOAD, (address, port))
            data, _ = sock.recvfrom(2048)
            return data == UDP_PAYLOAD, "echoed" if data == UDP_PAYLOAD else "wrong echo", ""
        sock.connect((address, port))
        return True, "connected", _hostname(sock)
    except TimeoutError:
        return False, "timeout", ""
    except OSError as e:
        names = {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable",
                 errno.ENETUNREACH: "network unreachable"}
        return False, names.get(e.errno or 0, str(e)), ""
    finally:
        sock.close()


def _hostname(sock: socket.socket) -> str:
    """The body of GET /hostname, if the peer speaks HTTP; "" otherwise."""
    try:
        sock.sendall(b"GET /hostname HTTP/1.0\r\nHost: probe\r\n\r\n")
        data = sock.recv(4096)
        if not data.startswith(b"HTTP/"):
            return ""  # an echo port, or something else: connected is all we learn
        while chunk := sock.recv(4096):
            data += chunk
    except OSError:
        return ""
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace").strip() if head.startswith(b"HTTP/") else ""
