"""The DNS server: an asyncio loop in its own thread serving a Chain over UDP and TCP on
sockets the caller made (bound inside a netns, which a thread cannot enter by itself).

When the chain starts with a Cache, a UDP or TCP query first tries the cache's fast path
on its raw bytes, and only a miss is parsed and served by the chain. Each UDP socket has a
reader thread of its own, blocking in recvfrom, answering hits itself and handing misses
to the loop: a hit then costs two system calls and no event loop round, and is counted in
a plain int that the metrics fold in when read (docs/dns.md has the measurements that
chose this). UDP replies larger than the client takes (512 bytes without EDNS) go back
header and question only with TC=1, and the client asks again over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dnslib import RCODE, DNSHeader, DNSRecord  # type: ignore[import-untyped]
from prometheus_client import Counter, Histogram

from podlab.dns.cache import Cache
from podlab.dns.handler import Chain
from podlab.dns.lookups import LookupLog
from podlab.dns.message import UDP_LIMIT, Request, qtype_name, reply, truncated, udp_limit
from podlab.dns.metrics import Metrics

UDP_WAKE = 0.2  # seconds a UDP reader blocks before looking at the stop flag
# A TCP client that stalls mid-query, or idles between queries, is closed after TCP_IDLE
# seconds (CoreDNS's idle timeout is 10 s); above TCP_CAP open connections a new one is
# closed at once: half-sent clients must not take every descriptor, which UDP needs too.
TCP_IDLE = 10.0
TCP_CAP = 512
EDNS_FAST_LIMIT = 1232  # the DNS flag day's safe EDNS size, for cached replies to EDNS clients


class DnsServer:
    def __init__(self, chain: Chain, udp_socks: Sequence[socket.socket] = (),
                 tcp_socks: Sequence[socket.socket] = (), *, metrics: Metrics | None = None,
                 log: LookupLog | None = None, metrics_socks: Sequence[socket.socket] = (),
                 log_socket: str | None = None) -> None:
        """The server owns the sockets from here on and closes them on stop();
        `metrics_socks`: TCP sockets for Prometheus scrapes; `log_socket`: the path of the
        lookup log's unix socket."""
        self.chain, self.metrics = chain, metrics or Metrics()
        self.log = log or LookupLog()
        self.udp_socks, self.tcp_socks = list(udp_socks), list(tcp_socks)
        self.metrics_socks, self.log_socket = list(metrics_socks), log_socket
        first = chain.stages[0] if chain.stages else None
        self._cache = first if isinstance(first, Cache) else None
        self._fast: Callable[[bytes], tuple[bytes, tuple[int, int, bool]] | None] | None = \
            self._cache.lookup if self._cache else None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dns-server", daemon=True)
        self._ready, self._stopping = threading.Event(), False
        self._error: BaseException | None = None
        self._counters: dict[tuple[str, int, int], tuple[Counter, Counter, Histogram]] = {}
        self._tcp_open = 0  # the loop's thread alone counts them
        # (qtype, rcode, denial) -> UDP fast-path hits, one dict per reader (its only
        # writer), and how many of them the counters have been given
        self._hits: list[dict[tuple[int, int, bool], int]] = [{} for _ in self.udp_socks]
        self._folded: dict[tuple[int, int, bool], int] = {}
        self._fold_lock = threading.Lock()
        self.metrics.on_collect(self._fold)
        self._readers = [threading.Thread(target=self._udp_reader, args=(sock, hits),
                                          name="dns-udp", daemon=True)
                         for sock, hits in zip(self.udp_socks, self._hits, strict=True)]

    def start(self) -> DnsServer:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._stopping = True
        for sock in self.udp_socks:
            with contextlib.suppress(OSError):  # ENOTCONN, but the blocked recvfrom wakes
                sock.shutdown(socket.SHUT_RD)
        for reader in self._readers:
            if reader.is_alive():
                reader.join()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        for sock in self.udp_socks + self.tcp_socks + self.metrics_socks:
            sock.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            servers = self._loop.run_until_complete(self._listen())
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            for s in servers:
                s.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self.chain.close())
            self._loop.close()

    async def _listen(self) -> list[asyncio.Server]:
        servers = []
        for reader in self._readers:
            reader.start()
        for sock in self.tcp_socks:
            sock.listen(128)
            servers.append(await asyncio.start_server(self._tcp_client, sock=sock))
        for sock in self.metrics_socks:
            sock.listen(16)
            servers.append(await asyncio.start_server(self.metrics.serve_http, sock=sock))
        if self.log_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_socket)
            servers.append(await asyncio.start_unix_server(self.log.serve, path=self.log_socket))
        return servers

    def _count(self, proto: str, qtype: int, rcode: int, n: int = 1,
               seconds: float | None = None) -> None:
        """CoreDNS's request and response counters (children memoised, so a batch of cache
        hits costs one increment each) and, for what the chain served, the duration."""
        key = (proto, qtype, rcode)
        children = self._counters.get(key)
        if children is None:
            m, name = self.metrics, qtype_name(qtype)
            children = self._counters[key] = (
                m.requests.labels(m.server, ".", proto, "1", name),
                m.responses.labels(m.server, ".", str(RCODE.get(rcode, rcode)), ""),
                m.duration.labels(m.server, ".", name))
        children[0].inc(n)
        children[1].inc(n)
        if seconds is not None:
            children[2].observe(seconds)

    def _udp_reader(self, sock: socket.socket, hits: dict[tuple[int, int, bool], int]) -> None:
        """One UDP socket's loop, in its own thread: hits answered here, misses to the
        event loop. Everything a hit needs is a local, and it is counted into `hits`, a
        plain dict that `_fold` adds to the metrics when they are read."""
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", 0, int(UDP_WAKE * 1e6)))
        fast, recv, send, record = self._fast, sock.recvfrom, sock.sendto, self.log.record
        while not self._stopping:
            try:
                data, addr = recv(65535)
            except OSError:  # the timeout (EAGAIN), or an ICMP error reported on the socket
                continue
            found = fast(data) if fast and data else None
            if found is None or (len(found[0]) > UDP_LIMIT and not (
                    found[0][11] and len(found[0]) <= EDNS_FAST_LIMIT)):
                if data:
                    self._loop.call_soon_threadsafe(self._udp_miss, sock, data, addr)
                continue
            out, kind = found
            record(addr[0], "udp", data, kind[1])  # logged and counted before the client
            hits[kind] = hits.get(kind, 0) + 1  # sees it, so a reader after it sees it too
            try:  # noqa: SIM105 (contextlib.suppress costs a hit 0.2 µs)
                send(out, addr)
            except OSError:  # a full buffer drops, as the network would
                pass

    def _fold(self) -> None:
        """Adds the UDP readers' hits since the last read of the metrics to the counters.
        A reader's dict is copied (atomic under the GIL) and never reset, so no hit it
        counts meanwhile is lost; the lock keeps two reads from adding the same hits."""
        totals: dict[tuple[int, int, bool], int] = {}
        with self._fold_lock:
            for hits in self._hits:
                for kind, n in hits.copy().items():
                    totals[kind] = totals.get(kind, 0) + n
            for kind, n in totals.items():
                new = n - self._folded.get(kind, 0)
                if new:
                    self._folded[kind] = n
                    self._count("udp", kind[0], kind[1], new)
                    self._cache_hits(kind[2], new)

    def _cache_hits(self, denied: bool, n: int) -> None:
        if self._cache is not None:
            self._cache.hits[denied].inc(n)

    def _udp_miss(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        self._loop.create_task(self._udp_query(sock, data, addr))

    async def _udp_query(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        out = await self._serve(data, addr, "udp")
        if out is not None:
            with contextlib.suppress(OSError):  # a full buffer drops, as the network would
                sock.sendto(out, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._tcp_open >= TCP_CAP:
            writer.close()
            return
        self._tcp_open += 1
        try:
            while True:
                (size,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2),
                                                                     TCP_IDLE))
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                found = self._fast(data) if self._fast else None
                if found is not None:
                    out: bytes | None = found[0]
                    qtype, rcode, denied = found[1]
                    self._count("tcp", qtype, rcode)
                    self._cache_hits(denied, 1)
                    self.log.record(peer[0], "tcp", data, rcode)
                else:
                    out = await self._serve(data, peer, "tcp")
                if out is None:
                    break
                writer.write(struct.pack(">H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._tcp_open -= 1
            writer.close()

    async def _serve(self, data: bytes, client: Any, transport: str) -> bytes | None:
        """The chain's reply as wire bytes; FORMERR for what does not parse, nothing for
        what has no header."""
        started = time.monotonic()
        req = Request(data, (client[0], client[1]), transport)
        try:
            query = req.msg
        except Exception:
            if len(data) < 12:
                return None
            formerr: bytes = DNSRecord(DNSHeader(id=int.from_bytes(data[:2], "big"), qr=1,
                                                 rcode=RCODE.FORMERR)).pack()
            return formerr
        try:
            msg = await self.chain(req)
        except Exception:  # a failing stage (every upstream down) is the client's SERVFAIL
            msg = reply(req, RCODE.SERVFAIL)
        msg.header.id = query.header.id
        out = bytes(msg.pack())
        if transport == "udp" and len(out) > udp_limit(query):
            out = bytes(truncated(msg).pack())
        seconds = time.monotonic() - started
        self._count(transport, query.q.qtype, msg.header.rcode, seconds=seconds)
        self.log.record(client[0], transport, data, trace=req.trace, rcode=msg.header.rcode,
                        seconds=seconds)
        return out
