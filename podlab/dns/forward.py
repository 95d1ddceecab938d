"""The forward stage: names under a rule's zone go to its upstreams, over UDP or TCP, in
order with failover (an upstream that times out or fails is skipped for this query). TCP
connections to an upstream are kept and reused, as CoreDNS's forward does (NodeLocal
DNSCache forwards the cluster zone over TCP: one connection, no per-query handshake, and
TCP's retransmission instead of the client's 5 s)."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from dnslib import RCODE, DNSRecord  # type: ignore[import-untyped]

from podlab.dns.handler import Next
from podlab.dns.message import Request
from podlab.dns.metrics import Metrics

# Seconds one query may take, split evenly over its rule's upstreams: under glibc's 5 s, so a
# client hears SERVFAIL (or a stale answer) before it times out and asks again. Two VPC
# resolvers get 2 s each; a lone upstream, the cluster DNS over TCP, gets all 4 s, past
# TCP's SYN retransmissions at 1 s and 3 s, so a SYN lost twice still gets its answer.
TIMEOUT = 4.0
IDLE = 10.0  # seconds a kept TCP connection may sit unused (CoreDNS's expire)
Rule = tuple[str, Sequence[str], str]  # (zone suffix, ["ip" | "ip:port"], "udp" | "tcp")


class ForwardError(Exception):
    """Every upstream of the rule failed."""


def _addr(upstream: str) -> tuple[str, int]:
    host, _, port = upstream.rpartition(":") if upstream.count(":") == 1 else (upstream, "", "")
    return host, int(port or 53)


class _TcpPool:
    """Idle connections to one upstream; a query takes one (or opens one) and gives it
    back after its reply."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def exchange(self, wire: bytes) -> bytes:
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < IDLE and not reader.at_eof():
                try:
                    return await self._send(reader, writer, wire)
                except (OSError, asyncio.IncompleteReadError):
                    pass  # closed by the peer while idle: open a new one
            writer.close()
        reader, writer = await asyncio.open_connection(*self.addr)
        return await self._send(reader, writer, wire)

    async def _send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    wire: bytes) -> bytes:
        try:
            writer.write(struct.pack(">H", len(wire)) + wire)
            (size,) = struct.unpack(">H", await reader.readexactly(2))
            data = await reader.readexactly(size)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer, time.monotonic()))
        return data

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def _udp_exchange(addr: tuple[str, int], wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(addr)
        await loop.sock_sendall(sock, wire)
        while True:
            data = await loop.sock_recv(sock, 65535)
            if data[:2] == wire[:2]:  # not a late reply to someone else
                return data


class Forward:
    def __init__(self, rules: Sequence[Rule], timeout: float = TIMEOUT,
                 metrics: Metrics | None = None) -> None:
        """`rules`: the longest matching zone suffix wins; "." matches every name.
        `timeout`: one query's, over all of its rule's upstreams (`attempt_timeout`)."""
        self.rules = sorted(((z.strip(".").lower(), list(u), t) for z, u, t in rules),
                            key=lambda r: -len(r[0]))
        self.timeout = timeout
        self.metrics = metrics or Metrics()
        self._pools: dict[tuple[str, int], _TcpPool] = {}

    def rule(self, name: str) -> Rule | None:
        name = name.rstrip(".").lower()
        for zone, upstreams, transport in self.rules:
            if not zone or name == zone or name.endswith("." + zone):
                return zone, upstreams, transport
        return None

    def attempt_timeout(self, upstreams: Sequence[str]) -> float:
        """Each upstream's share of the query's timeout."""
        return self.timeout / max(1, len(upstreams))

    async def serve(self, req: Request, next: Next) -> Any:
        rule = self.rule(req.qname)
        if rule is None:
            return await next(req)
        _, upstreams, transport = rule
        query = req.msg
        wire = struct.pack(">H", random.getrandbits(16)) + query.pack()[2:]
        for upstream in upstreams:
            addr = _addr(upstream)
            started = time.monotonic()
            try:
                data = await asyncio.wait_for(self._exchange(addr, transport, wire),
                                              self.attempt_timeout(upstreams))
                msg = DNSRecord.parse(data)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                self.metrics.forward_duration.labels("forward", upstream, "error").observe(
                    time.monotonic() - started)
                req.trace.upstream = f"{upstream}/{transport} failed: {type(e).__name__}"
                continue
            rcode = RCODE.get(msg.header.rcode, str(msg.header.rcode))
            self.metrics.forward_duration.labels("forward", upstream, rcode).observe(
                time.monotonic() - started)
            req.trace.upstream = f"{upstream}/{transport}"
            msg.header.id = query.header.id
            return msg
        raise ForwardError(f"{req.qname}: no upstream of {upstreams} answered")

    async def _exchange(self, addr: tuple[str, int], transport: str, wire: bytes) -> bytes:
        if transport == "udp":
            data = await _udp_exchange(addr, wire)
            if len(data) < 3 or not data[2] & 0x02:
                return data
            # TC=1: the same upstream over TCP, or the client's TCP retry would get TC again
        pool = self._pools.get(addr)
        if pool is None:
            pool = self._pools[addr] = _TcpPool(addr)
        return await pool.exchange(wire)

    async def close(self) -> None:
        """Closes the kept TCP connections (in the loop that opened them)."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
