"""A DNS request as it travels down the chain: the client's wire bytes, parsed by dnslib
only when a stage needs the message (a cache hit never does), and the notes the stages
leave for the lookup log (names tried by autopath, cache hit or miss, upstream)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, DNSHeader, DNSRecord  # type: ignore[import-untyped]

UDP_LIMIT = 512  # RFC 1035: the most a UDP reply may carry to a client without EDNS


@dataclass
class Trace:
    """What the stages did for one lookup, for the lookup log."""

    tried: list[str] = field(default_factory=list)  # autopath's names, in order
    hit: str | None = None  # the name that answered, when autopath walked
    cache: str | None = None  # "hit" | "miss" | "stale"
    upstream: str | None = None


@dataclass
class Request:
    wire: bytes
    client: tuple[str, int]
    transport: str = "udp"  # "udp" | "tcp"
    trace: Trace = field(default_factory=Trace)
    _msg: Any = None

    @property
    def msg(self) -> Any:
        """The parsed message (a `dnslib.DNSRecord`); parsed once, on first use."""
        if self._msg is None:
            self._msg = DNSRecord.parse(self.wire)
        return self._msg

    @property
    def qname(self) -> str:
        """The question's name, lowercased, with its trailing dot."""
        return str(self.msg.q.qname).lower()

    @property
    def qtype(self) -> int:
        return int(self.msg.q.qtype)

    def with_qname(self, name: str) -> Request:
        """The same question for another name (autopath's walk), sharing this trace."""
        msg = DNSRecord.parse(self.wire)
        msg.q.qname = name
        return Request(bytes(msg.pack()), self.client, self.transport, self.trace, msg)


def reply(req: Request, rcode: int = RCODE.NOERROR, *, aa: bool = False) -> Any:
    """An empty reply to `req` (question echoed, RD copied, RA set)."""
    msg = req.msg
    return DNSRecord(DNSHeader(id=msg.header.id, qr=1, aa=int(aa), ra=1, rd=msg.header.rd,
                               rcode=rcode), q=msg.q)


def udp_limit(msg: Any) -> int:
    """The largest UDP reply the client takes: its EDNS buffer size, else 512."""
    for rr in msg.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_LIMIT, int(rr.rclass))
    return UDP_LIMIT


def truncated(msg: Any) -> Any:
    """A reply that does not fit: the header and question with TC=1, so the client retries
    over TCP (glibc does)."""
    h = msg.header
    return DNSRecord(DNSHeader(id=h.id, bitmap=h.bitmap, tc=1), questions=list(msg.questions))


def qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, str(qtype)))
