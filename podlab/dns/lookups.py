"""The lookup log: a bounded ring of what the server answered, per lookup as the client
sent it (client and its pod, the name and type, the names autopath tried and the one that
hit, cache hit or miss, upstream, rcode, latency), and a JSON-lines unix socket protocol so
`podlab dns log` can read it from another process.

Protocol: the client sends one line `{"after": SEQ, "follow": BOOL}`; the server writes one
JSON object per line for every lookup with a larger seq, then, when following, each new
one as it comes, until the client hangs up. Recording is cheap (a tuple in a deque, the
wire bytes kept by reference) since the cache's fast path records too; a lookup is parsed
only when read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from dnslib import RCODE, DNSRecord  # type: ignore[import-untyped]

from podlab.dns.message import Trace, qtype_name

FOLLOW_POLL = 0.1  # seconds between looks for new lookups while following
_Row = tuple[int, float, str, str | None, str, bytes, Trace | None, int, float]


class LookupLog:
    def __init__(self, size: int = 10000,
                 pod_of: Callable[[str], str | None] = lambda ip: None) -> None:
        """`pod_of`: `namespace/name` of the pod with a client's address, if any."""
        self._rows: deque[_Row] = deque(maxlen=size)
        self.pod_of = pod_of
        self.seq = 0
        self._lock = threading.Lock()  # UDP readers record from their threads

    def record(self, client_ip: str, transport: str, query: bytes, rcode: int, *,
               trace: Trace | None = None, seconds: float = 0.0) -> None:
        """`trace` None: answered by the cache's fast path."""
        pod = self.pod_of(client_ip)
        with self._lock:  # seqs in the ring in order, so a follower misses none
            self.seq += 1
            self._rows.append((self.seq, time.time(), client_ip, pod, transport, query, trace,
                               rcode, seconds))

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [_render(r) for r in list(self._rows) if r[0] > seq]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client of the unix socket (see the module's protocol)."""
        try:
            ask = json.loads(await reader.readline() or b"{}")
            seq, follow = int(ask.get("after", 0)), bool(ask.get("follow", False))
            while True:
                rows = self.after(seq)
                for row in rows:
                    writer.write(json.dumps(row).encode() + b"\n")
                    seq = row["seq"]
                await writer.drain()
                if not follow:
                    break
                await asyncio.sleep(FOLLOW_POLL)
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _render(row: _Row) -> dict[str, Any]:
    seq, at, ip, pod, transport, query, trace, rcode, seconds = row
    try:
        q = DNSRecord.parse(query).q
        name, qtype = str(q.qname), qtype_name(q.qtype)
    except Exception:  # a malformed query is logged as such
        name, qtype = "", ""
    trace = trace or Trace(cache="hit")
    return {"seq": seq, "time": at, "client": ip, "pod": pod, "transport": transport,
            "qname": name, "qtype": qtype, "tried": trace.tried, "hit": trace.hit,
            "cache": trace.cache, "upstream": trace.upstream,
            "rcode": str(RCODE.get(rcode, rcode)), "ms": round(seconds * 1000, 3)}


def read(path: str, after: int = 0, follow: bool = False) -> Iterator[dict[str, Any]]:
    """The client side: each lookup the log at `path` sends, as it comes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(json.dumps({"after": after, "follow": follow}).encode() + b"\n")
        with sock.makefile("rb") as lines:
            for line in lines:
                yield json.loads(line)
