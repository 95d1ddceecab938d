"""The cache stage, CoreDNS's `cache` with NodeLocal DNSCache's settings: success capped at
30 s, denial (NXDOMAIN, NODATA) at 5 s, every TTL in a reply the entry's remaining time, and
stale entries served while the upstreams fail (RFC 8767, CoreDNS's `serve_stale`).

Hits take a fast path that never parses with dnslib: the key is the question's raw bytes
(lowercased name, type, class) plus the CD bit, EDNS presence and DO bit; an entry keeps the
reply's bytes and the offsets of its TTL fields, and a hit copies in the client's ID and
question and writes the TTLs with struct, once per second of age. A query's exact bytes
after its ID, which a client sends again and again, remember their whole reply for that
second, so a repeated query skips even the key's parse. That is what brings a Python
server near unbound's rate (docs/dns.md)."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped]

from podlab.dns.handler import Next
from podlab.dns.message import Request
from podlab.dns.metrics import Metrics

STALE_TTL = 30  # RFC 8767: the TTL of a stale answer
OPT = 41
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_monotonic = time.monotonic


def question_key(wire: bytes) -> tuple[bytes, int] | None:
    """(key, end of the question) of a plain query, None for anything else (a reply, an
    opcode other than QUERY, not one question, a malformed name)."""
    try:
        if wire[2] & 0xF8 or wire[4:6] != b"\x00\x01":  # QR=0, opcode 0; QDCOUNT 1
            return None
        i = 12
        n = wire[i]
        while n:
            if n & 0xC0:
                return None
            i += n + 1
            n = wire[i]
        end = i + 5
        if end > len(wire):
            return None
        bits = wire[3] & 0x10  # CD
        if wire[11] and wire[end:end + 3] == b"\x00\x00\x29":  # an OPT record follows
            bits |= 0x01 | (0x02 if wire[end + 7] & 0x80 else 0)  # EDNS, DO
    except IndexError:
        return None
    return bytes(wire[12:end]).lower() + bytes((bits,)), end


def _skip_name(wire: bytes, i: int) -> int:
    while True:
        n = wire[i]
        if n & 0xC0 == 0xC0:
            return i + 2
        if n == 0:
            return i + 1
        i += n + 1


def ttl_offsets(wire: bytes) -> tuple[int, ...]:
    """Where the TTL of each record of a reply sits (OPT's is flags, not a TTL)."""
    qd, an, ns, ar = struct.unpack_from(">HHHH", wire, 4)
    i = 12
    for _ in range(qd):
        i = _skip_name(wire, i) + 4
    out = []
    for _ in range(an + ns + ar):
        i = _skip_name(wire, i)
        if _U16.unpack_from(wire, i)[0] != OPT:
            out.append(i + 4)
        i += 10 + _U16.unpack_from(wire, i + 8)[0]
    return tuple(out)


@dataclass
class _Entry:
    wire: bytes
    end: int  # where the question ends
    offsets: tuple[int, ...]
    ttl: int
    stored: float
    kind: tuple[int, int, bool]  # qtype, rcode, denial: what a hit on it is counted as
    age: int = -1  # the age in seconds `head` and `tail` were written for
    head: bytes = b""  # the reply's header after the ID
    tail: bytes = b""  # the reply after the question

    def at(self, age: int) -> None:
        """Writes every TTL as the entry's remaining seconds at `age`."""
        buf = bytearray(self.wire)
        remaining = max(0, self.ttl - age)
        for off in self.offsets:
            _U32.pack_into(buf, off, remaining)
        self.age, self.head, self.tail = age, bytes(buf[2:12]), bytes(buf[self.end:])


class Cache:
    def __init__(self, success_cap: int = 30, denial_cap: int = 5, serve_stale: int = 3600,
                 capacity: int = 10000, metrics: Metrics | None = None) -> None:
        """`serve_stale`: how long after expiry an entry may still answer when the rest
        of the chain fails (0: never)."""
        self.success_cap, self.denial_cap = success_cap, denial_cap
        self.serve_stale, self.capacity = serve_stale, capacity
        self.metrics = metrics or Metrics()
        self._entries: dict[bytes, _Entry] = {}
        # a query's bytes after the ID -> (key, its entry, the age, the reply after the ID)
        self._sent: dict[bytes, tuple[bytes, _Entry, int, bytes]] = {}
        server = self.metrics.server
        self.hits = {d: self.metrics.cache_hits.labels(server, "denial" if d else "success",
                                                       ".", "") for d in (False, True)}

    def hit(self, wire: bytes) -> bytes | None:
        """The fast path: the cached reply to a query's wire bytes, or None."""
        found = self.lookup(wire)
        return None if found is None else found[0]

    def lookup(self, wire: bytes) -> tuple[bytes, tuple[int, int, bool]] | None:
        """The fast path with what the reply is (qtype, rcode, denial), for the server,
        which counts hits itself rather than one `inc()` each. A remembered reply is good
        while its entry is still the key's and the same second of its age."""
        sent, now = wire[2:], _monotonic()
        seen = self._sent.get(sent)
        if seen is not None:
            key, entry, age, body = seen
            if int(now - entry.stored) == age and self._entries.get(key) is entry:
                return wire[:2] + body, entry.kind
        k = question_key(wire)
        if k is None:
            return None
        e = self._entries.get(k[0])
        if e is None:
            return None
        age = int(now - e.stored)
        if age >= e.ttl:
            return None
        if age != e.age:
            e.at(age)
        body = e.head + wire[12:k[1]] + e.tail
        if len(self._sent) >= self.capacity:
            self._sent.clear()
        self._sent[sent] = (k[0], e, age, body)
        return wire[:2] + body, e.kind

    async def serve(self, req: Request, next: Next) -> Any:
        k = question_key(req.wire)
        if k is None:
            return await next(req)
        found = self.lookup(req.wire)
        if found is not None:
            req.trace.cache = "hit"
            self.hits[found[1][2]].inc()
            return DNSRecord.parse(found[0])
        req.trace.cache = "miss"
        self.metrics.cache_misses.inc()
        try:
            msg = await next(req)
        except Exception:
            stale = self._stale(k[0], req.wire, k[1])
            if stale is None:
                raise
            return stale
        if msg.header.rcode == RCODE.SERVFAIL:
            stale = self._stale(k[0], req.wire, k[1])
            return msg if stale is None else stale
        stored = self._store(k[0], msg)
        if stored is None:
            return msg
        stored.at(0)
        return DNSRecord.parse(req.wire[:2] + stored.head + req.wire[12:k[1]] + stored.tail)

    def _stale(self, key: bytes, wire: bytes, end: int) -> Any:
        e = self._entries.get(key)
        if e is None or _monotonic() - e.stored > e.ttl + self.serve_stale:
            return None
        buf = bytearray(wire[:2] + e.wire[2:12] + wire[12:end] + e.wire[end:])
        for off in e.offsets:
            _U32.pack_into(buf, off, STALE_TTL)
        return DNSRecord.parse(bytes(buf))

    def _store(self, key: bytes, msg: Any) -> _Entry | None:
        rcode = msg.header.rcode
        if msg.header.tc or rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
            return None
        ttls = [rr.ttl for rr in msg.rr + msg.auth + msg.ar if rr.rtype != QTYPE.OPT]
        if rcode == RCODE.NXDOMAIN or not msg.rr:
            soa = [rr.rdata.times[4] for rr in msg.auth if rr.rtype == QTYPE.SOA]
            ttl = min([self.denial_cap, *ttls, *soa])
        else:
            ttl = min([self.success_cap, *ttls])
        if ttl <= 0:
            return None
        wire = bytes(msg.pack())
        e = _Entry(wire, _skip_name(wire, 12) + 4, ttl_offsets(wire), ttl, _monotonic(),
                   (int(msg.q.qtype), rcode, rcode == RCODE.NXDOMAIN or not msg.rr))
        self._entries.pop(key, None)
        self._entries[key] = e
        if len(self._entries) > self.capacity:
            del self._entries[next(iter(self._entries))]
        self.metrics.cache_entries.labels(self.metrics.server, "all", ".", "").set(
            len(self._entries))
        return e
