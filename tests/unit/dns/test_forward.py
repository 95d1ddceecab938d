"""Forwarding over real sockets: per-rule transport, failover past dead and silent
upstreams, and TCP connections kept for the next query."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import RR, DNSRecord  # type: ignore[import-untyped]

from podlab.dns import Chain, Forward, ForwardError, StaticZone

from .helpers import answers, query, rcode, serving


@pytest.fixture
def upstream() -> Iterator[int]:
    """The lab's internet: a static zone on UDP and TCP."""
    with serving(Chain([StaticZone()])) as (_, port):
        yield port


class _TcpUpstream(socketserver.ThreadingTCPServer):
    """Answers every query with one A record; counts the connections it accepted."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Frames)


class _Frames(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _TcpUpstream)
        server.connections += 1
        conn: socket.socket = self.request
        while head := conn.recv(2):
            data = conn.recv(struct.unpack(">H", head)[0])
            msg = DNSRecord.parse(data).reply()
            msg.add_answer(*RR.fromZone(f"{msg.q.qname} 5 IN A 10.0.0.1"))
            out = bytes(msg.pack())
            conn.sendall(struct.pack(">H", len(out)) + out)


def forward(fwd: Forward, name: str) -> Any:
    async def go() -> Any:
        req = query(name)
        msg = await fwd.serve(req, _refuse)
        return msg, req.trace.upstream
    return asyncio.run(go())


async def _refuse(req: Any) -> Any:
    raise AssertionError("no rule should have let this through")


def silent() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_udp_forward_keeps_the_id_and_names_the_upstream(upstream: int) -> None:
    msg, used = forward(Forward([(".", [f"127.0.0.1:{upstream}"], "udp")]), "aliyun.com.")
    assert answers(msg) == ["aliyun.com. 300 A 203.0.113.10"]
    assert used == f"127.0.0.1:{upstream}/udp"


def test_failover_past_refused_and_silent_upstreams(upstream: int) -> None:
    with silent() as quiet, silent() as closed:
        dead = closed.getsockname()[1]
        closed.close()
        fwd = Forward([(".", [f"127.0.0.1:{dead}", f"127.0.0.1:{quiet.getsockname()[1]}",
                              f"127.0.0.1:{upstream}"], "udp")], timeout=0.9)
        msg, used = forward(fwd, "aliyun.com.")
    assert rcode(msg) == "NOERROR"
    assert used == f"127.0.0.1:{upstream}/udp"


def test_every_upstream_failing_is_an_error() -> None:
    with silent() as quiet:
        fwd = Forward([(".", [f"127.0.0.1:{quiet.getsockname()[1]}"], "udp")], timeout=0.2)
        with pytest.raises(ForwardError):
            forward(fwd, "aliyun.com.")


def test_tcp_connections_are_reused() -> None:
    up = _TcpUpstream()
    threading.Thread(target=up.serve_forever, daemon=True).start()
    try:
        fwd = Forward([("cluster.local", [f"127.0.0.1:{up.server_address[1]}"], "tcp")])

        async def three() -> list[Any]:
            try:
                return [await fwd.serve(query(f"s{i}.default.svc.cluster.local."), _refuse)
                        for i in range(3)]
            finally:
                await fwd.close()
        msgs = asyncio.run(three())
    finally:
        up.shutdown()
        up.server_close()
    assert [answers(m)[0].split()[-1] for m in msgs] == ["10.0.0.1"] * 3
    assert up.connections == 1


def test_longest_zone_wins_and_other_names_pass() -> None:
    fwd = Forward([(".", ["1.1.1.1"], "udp"), ("cluster.local", ["10.0.0.10"], "tcp")])
    assert fwd.rule("web.default.svc.cluster.local.") == ("cluster.local", ["10.0.0.10"], "tcp")
    assert fwd.rule("aliyun.com.") == ("", ["1.1.1.1"], "udp")
    assert Forward([("cluster.local", ["10.0.0.10"], "tcp")]).rule("aliyun.com.") is None


def test_a_query_s_timeout_is_shared_by_its_upstreams() -> None:
    """Under glibc's 5 s in all: two VPC resolvers get 2 s each; the cluster DNS, alone,
    4 s, past a SYN's second retransmission (3 s)."""
    fwd = Forward([(".", ["100.100.2.136", "100.100.2.138"], "udp"),
                   ("cluster.local", ["172.21.0.10"], "tcp")])
    assert fwd.attempt_timeout(["100.100.2.136", "100.100.2.138"]) == 2.0
    assert 3.0 < fwd.attempt_timeout(["172.21.0.10"]) < 5.0


def test_a_truncated_udp_reply_is_asked_again_over_tcp() -> None:
    big = "".join(f"big.example.com. 60 IN A 198.51.100.{i}\n" for i in range(1, 41))
    with serving(Chain([StaticZone(big)])) as (_, port):
        fwd = Forward([(".", [f"127.0.0.1:{port}"], "udp")])

        async def go() -> Any:
            try:
                return await fwd.serve(query("big.example.com."), _refuse)
            finally:
                await fwd.close()
        msg = asyncio.run(go())
    assert (msg.header.tc, len(msg.rr)) == (0, 40)
