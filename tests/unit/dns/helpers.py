"""What the DNS tests share: queries as wire bytes, a stage's reply through dnslib, and a
server on 127.0.0.1 with real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSRecord  # type: ignore[import-untyped]

from podlab.dns import DEFAULT_INTERNET_ZONE, Chain, DnsServer, Handler, Request

__all__ = ["DEFAULT_INTERNET_ZONE"]  # for the tests that import it with the rest


def query(name: str, qtype: str = "A", client: str = "10.0.0.9") -> Request:
    return Request(bytes(DNSRecord.question(name, qtype).pack()), (client, 40000))


def run(stage: Handler, req: Request,
        next: Callable[[Request], Awaitable[Any]] | None = None) -> Any:
    """The stage's reply, packed and parsed again: what a client would read. Without
    `next`, the rest of the chain answers REFUSED, so a test sees what was passed on."""
    async def nothing(r: Request) -> Any:
        msg = r.msg.reply()
        msg.header.rcode = RCODE.REFUSED
        return msg
    msg = asyncio.run(stage.serve(req, next or nothing))
    return DNSRecord.parse(msg.pack())


def answers(msg: Any) -> list[str]:
    """The answer section in zone format, one string per record."""
    return [f"{rr.rname} {rr.ttl} {QTYPE[rr.rtype]} {rr.rdata}" for rr in msg.rr]


def rcode(msg: Any) -> str:
    return str(RCODE[msg.header.rcode])


def zone_handler(records: dict[str, int], ttl: int = 3600) -> Callable[[Request], Awaitable[Any]]:
    """CoreDNS's autopath test's nextHandler: per name, NXDOMAIN (with an SOA) or
    NOERROR with `name 3600 IN A 127.0.0.53`; any other name SERVFAIL."""
    soa = RR.fromZone("example.org. 1800 IN SOA example.org. example.org. 1502165581 14400 "
                      "3600 604800 14400")

    async def handler(req: Request) -> Any:
        msg = req.msg.reply()
        code = records.get(req.qname)
        if code is None:
            msg.header.rcode = RCODE.SERVFAIL
        elif code == RCODE.NXDOMAIN:
            msg.header.rcode = code
            msg.add_auth(*soa)
        else:
            msg.add_answer(*RR.fromZone(f"{req.msg.q.qname} {ttl} IN A 127.0.0.53"))
        return msg
    return handler


def udp_socks(host: str = "127.0.0.1", port: int = 0) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on one port (an ephemeral one unless given)."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError("no free port for UDP and TCP")


@contextmanager
def serving(chain: Chain, host: str = "127.0.0.1", port: int = 0,
            **kwargs: Any) -> Iterator[tuple[DnsServer, int]]:
    udp, tcp = udp_socks(host, port)
    server = DnsServer(chain, [udp], [tcp], **kwargs).start()
    try:
        yield server, udp.getsockname()[1]
    finally:
        server.stop()


def ask(port: int, name: str, qtype: str = "A", *, tcp: bool = False, edns: bool = False,
        host: str = "127.0.0.1", wire: bytes | None = None) -> Any:
    """One query over real sockets; the reply parsed by dnslib."""
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=4096))
    data = wire or bytes(q.pack())
    if tcp:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(struct.pack(">H", len(data)) + data)
            size = struct.unpack(">H", _read(s, 2))[0]
            return DNSRecord.parse(_read(s, size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(data, (host, port))
        return DNSRecord.parse(s.recv(65535))


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data
