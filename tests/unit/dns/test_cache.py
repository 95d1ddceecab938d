"""The cache: caps, TTLs counting down, serve-stale, and the fast path's bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dnslib import EDNS0, RCODE, RR, DNSRecord  # type: ignore[import-untyped]

from podlab.dns import Cache, Chain, Metrics, Request
from podlab.dns import cache as cache_module
from podlab.dns.forward import ForwardError

from .helpers import answers, ask, query, rcode, serving


class Upstream:
    """The rest of the chain: answers from a table and counts what reaches it."""

    def __init__(self, ttl: int = 300) -> None:
        self.ttl, self.calls, self.down = ttl, 0, False

    async def __call__(self, req: Request) -> Any:
        self.calls += 1
        if self.down:
            raise ForwardError("down")
        msg = req.msg.reply()
        if req.qname.startswith("nope"):
            msg.header.rcode = RCODE.NXDOMAIN
            msg.add_auth(*RR.fromZone("example.com. 600 IN SOA a. b. 1 2 3 4 300"))
        elif req.qname.startswith("fail"):
            msg.header.rcode = RCODE.SERVFAIL
        else:
            msg.add_answer(*RR.fromZone(f"{req.msg.q.qname} {self.ttl} IN A 192.0.2.1"))
        return msg

    async def serve(self, req: Request, next: Any) -> Any:
        return await self(req)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(cache_module, "_monotonic", lambda: now[0])
    return now


def serve(cache: Cache, up: Upstream, name: str, qtype: str = "A") -> Any:
    return DNSRecord.parse(asyncio.run(cache.serve(query(name, qtype), up)).pack())


def test_success_is_capped_at_30s_and_counts_down(clock: list[float]) -> None:
    cache, up = Cache(), Upstream(ttl=300)
    assert answers(serve(cache, up, "a.example.com.")) == ["a.example.com. 30 A 192.0.2.1"]
    clock[0] += 12.5
    assert answers(serve(cache, up, "a.example.com.")) == ["a.example.com. 18 A 192.0.2.1"]
    assert up.calls == 1
    clock[0] += 18
    serve(cache, up, "a.example.com.")
    assert up.calls == 2


def test_short_ttls_are_kept(clock: list[float]) -> None:
    cache, up = Cache(), Upstream(ttl=5)
    serve(cache, up, "a.example.com.")
    clock[0] += 5
    serve(cache, up, "a.example.com.")
    assert up.calls == 2


def test_denial_is_capped_at_5s(clock: list[float]) -> None:
    cache, up = Cache(), Upstream()
    msg = serve(cache, up, "nope.example.com.")
    assert rcode(msg) == "NXDOMAIN"
    assert msg.auth[0].ttl == 5
    clock[0] += 4
    serve(cache, up, "nope.example.com.")
    assert up.calls == 1
    clock[0] += 1
    serve(cache, up, "nope.example.com.")
    assert up.calls == 2


def test_servfail_is_not_cached(clock: list[float]) -> None:
    cache, up = Cache(), Upstream()
    serve(cache, up, "fail.example.com.")
    serve(cache, up, "fail.example.com.")
    assert up.calls == 2


def test_stale_is_served_while_the_upstreams_fail(clock: list[float]) -> None:
    cache, up = Cache(serve_stale=60), Upstream()
    serve(cache, up, "a.example.com.")
    clock[0] += 31
    up.down = True
    assert answers(serve(cache, up, "a.example.com.")) == ["a.example.com. 30 A 192.0.2.1"]
    clock[0] += 60
    with pytest.raises(ForwardError):
        serve(cache, up, "a.example.com.")


def test_fast_path_patches_id_case_and_ttl_without_parsing(clock: list[float]) -> None:
    cache, up = Cache(), Upstream()
    serve(cache, up, "a.example.com.")
    clock[0] += 3.2
    q = DNSRecord.question("A.Example.COM", "A")
    q.header.id = 0xBEEF
    wire = cache.hit(bytes(q.pack()))
    assert wire is not None
    msg = DNSRecord.parse(wire)
    assert msg.header.id == 0xBEEF
    assert str(msg.q.qname) == "A.Example.COM."
    assert [rr.ttl for rr in msg.rr] == [27]
    assert cache.hit(bytes(DNSRecord.question("a.example.com", "AAAA").pack())) is None


def test_fast_path_keys_edns_and_do_apart(clock: list[float]) -> None:
    cache, up = Cache(), Upstream()
    serve(cache, up, "a.example.com.")
    q = DNSRecord.question("a.example.com", "A")
    q.add_ar(EDNS0(udp_len=1232))
    assert cache.hit(bytes(q.pack())) is None
    q.ar[0] = EDNS0(udp_len=1232, flags="do")
    asyncio.run(cache.serve(Request(bytes(q.pack()), ("10.0.0.9", 1)), up))
    assert cache.hit(bytes(q.pack())) is not None
    q.ar[0] = EDNS0(udp_len=1232)
    assert cache.hit(bytes(q.pack())) is None


def test_a_repeated_query_answers_from_its_remembered_reply_only_while_cached(
        clock: list[float]) -> None:
    """The reply remembered for a query's exact bytes counts down with its entry and goes
    when the entry is evicted."""
    cache, up = Cache(capacity=1), Upstream()
    serve(cache, up, "a.example.com.")
    q = DNSRecord.question("a.Example.com", "A")
    q.header.id = 7
    first = cache.hit(bytes(q.pack()))
    q.header.id = 8
    again = cache.hit(bytes(q.pack()))
    assert first is not None
    assert again is not None
    assert again[2:] == first[2:]
    assert DNSRecord.parse(again).header.id == 8
    clock[0] += 1
    assert [rr.ttl for rr in DNSRecord.parse(cache.hit(bytes(q.pack()))).rr] == [29]
    serve(cache, up, "b.example.com.")  # capacity 1: a is evicted
    assert cache.hit(bytes(q.pack())) is None


class _Counted(Cache):
    """Counts the requests that reach the chain (a fast-path hit never does)."""

    served = 0

    async def serve(self, req: Request, next: Any) -> Any:
        self.served += 1
        return await super().serve(req, next)


def test_hits_over_the_wire_take_the_fast_path() -> None:
    up, metrics = Upstream(), Metrics()
    cache = _Counted(metrics=metrics)
    with serving(Chain([cache, up]), metrics=metrics) as (server, port):
        for tcp in (False, True, False):
            assert answers(ask(port, "a.example.com", tcp=tcp)) == [
                "a.example.com. 30 A 192.0.2.1"]
        assert (cache.served, up.calls) == (1, 1)
        assert [r["cache"] for r in server.log.after(0)] == ["miss", "hit", "hit"]
        labels = {"server": "dns://:53", "type": "success", "zones": ".", "view": ""}
        # a read of the metrics folds in every hit answered before it, UDP's too
        assert server.metrics.registry.get_sample_value("coredns_cache_hits_total",
                                                        labels) == 2
        assert server.metrics.registry.get_sample_value(
            "coredns_dns_requests_total", {"server": "dns://:53", "zone": ".",
                                           "proto": "udp", "family": "1", "type": "A"}) == 2
