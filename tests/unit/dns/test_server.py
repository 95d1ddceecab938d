"""The server over real UDP and TCP sockets: truncation, malformed queries, a failing
stage, the metrics endpoint and the lookup log's socket."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from dnslib import DNSRecord  # type: ignore[import-untyped]

from podlab.dns import Chain, Metrics, Request, StaticZone
from podlab.dns import server as server_module
from podlab.dns.lookups import read

from .helpers import answers, ask, rcode, serving, udp_socks

BIG = "".join(f"big.example.com. 60 IN A 198.51.100.{i}\n" for i in range(1, 41))


def test_udp_and_tcp_answer() -> None:
    with serving(Chain([StaticZone()])) as (_, port):
        for tcp in (False, True):
            assert answers(ask(port, "aliyun.com", tcp=tcp)) == ["aliyun.com. 300 A 203.0.113.10"]


def test_udp_reply_over_512_bytes_without_edns_is_truncated() -> None:
    with serving(Chain([StaticZone(BIG)])) as (_, port):
        udp = ask(port, "big.example.com")
        assert udp.header.tc == 1
        assert answers(udp) == []
        assert str(udp.q.qname) == "big.example.com."  # glibc matches the question
        assert len(ask(port, "big.example.com", edns=True).rr) == 40
        tcp = ask(port, "big.example.com", tcp=True)
        assert tcp.header.tc == 0
        assert len(tcp.rr) == 40


def test_malformed_query_gets_formerr_and_a_stub_nothing() -> None:
    with serving(Chain([StaticZone()])) as (_, port):
        msg = ask(port, "", wire=b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc")
        assert (msg.header.id, rcode(msg)) == (0x1234, "FORMERR")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(b"\x01", ("127.0.0.1", port))
            try:
                s.recv(512)
                raise AssertionError("a 1-byte datagram was answered")
            except TimeoutError:
                pass


class _Broken:
    async def serve(self, req: Request, next: Any) -> Any:
        raise RuntimeError("boom")


def test_a_failing_stage_is_servfail_and_the_server_goes_on() -> None:
    with serving(Chain([_Broken()])) as (_, port):
        assert rcode(ask(port, "aliyun.com")) == "SERVFAIL"
        assert rcode(ask(port, "aliyun.com", tcp=True)) == "SERVFAIL"


def test_metrics_are_served_with_coredns_names() -> None:
    metrics = Metrics()
    scrape = socket.socket()
    scrape.bind(("127.0.0.1", 0))
    with serving(Chain([StaticZone()]), metrics=metrics, metrics_socks=[scrape]) as (_, port):
        ask(port, "aliyun.com")
        ask(port, "nope.aliyun.com")
        url = f"http://127.0.0.1:{scrape.getsockname()[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    assert 'coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",' \
           'zone="."} 2.0' in text
    assert 'coredns_dns_responses_total{plugin="",rcode="NXDOMAIN",server="dns://:53",' \
           'zone="."} 1.0' in text


def test_lookup_log_socket_reads_after_a_seq_and_follows(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with serving(Chain([StaticZone()]), log_socket=path) as (_, port):
        ask(port, "aliyun.com")
        ask(port, "nope.aliyun.com", tcp=True)
        rows = list(read(path))
        assert [(r["seq"], r["qname"], r["qtype"], r["transport"], r["rcode"]) for r in rows] == [
            (1, "aliyun.com.", "A", "udp", "NOERROR"), (2, "nope.aliyun.com.", "A", "tcp",
                                                        "NXDOMAIN")]
        assert [r["seq"] for r in read(path, after=1)] == [2]
        followed: list[dict[str, Any]] = []

        def follow() -> None:
            for row in read(path, after=2, follow=True):
                followed.append(row)
                return
        t = threading.Thread(target=follow, daemon=True)
        t.start()
        time.sleep(0.2)
        ask(port, "example.com", "AAAA")
        t.join(5)
    assert [(r["seq"], r["qname"], r["qtype"]) for r in followed] == [(3, "example.com.", "AAAA")]


def test_tcp_connection_serves_several_queries() -> None:
    with serving(Chain([StaticZone()])) as (_, port), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for name in ("aliyun.com", "example.com"):
            q = bytes(DNSRecord.question(name).pack())
            s.sendall(struct.pack(">H", len(q)) + q)
            size = struct.unpack(">H", s.recv(2))[0]
            assert DNSRecord.parse(s.recv(size)).rr


def test_static_zone_follows_its_cnames() -> None:
    with serving(Chain([StaticZone()])) as (_, port):
        assert answers(ask(port, "www.aliyun.com")) == ["www.aliyun.com. 300 CNAME aliyun.com.",
                                                        "aliyun.com. 300 A 203.0.113.10"]
        assert rcode(ask(port, "nope.aliyun.com")) == "NXDOMAIN"
        assert rcode(ask(port, "aliyun.com", "AAAA")) == "NOERROR"


def test_the_resolver_runs_as_a_process() -> None:
    udp, tcp = udp_socks()
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    proc = subprocess.Popen([sys.executable, "-m", "podlab.dns", "resolver", "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert answers(ask(port, "aliyun.com", tcp=True)) == [
                    "aliyun.com. 300 A 203.0.113.10"]
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, proc.stderr
                time.sleep(0.1)
        assert answers(ask(port, "aliyun.com")) == ["aliyun.com. 300 A 203.0.113.10"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _half_sent(port: int) -> socket.socket:
    """A TCP client that announced a 100-byte query and sent 3 bytes of it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(struct.pack(">H", 100) + b"abc")
    return s


def _closed(s: socket.socket) -> bool:
    """Closed by the server: EOF, or a reset, since what it sent went unread."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_tcp_client_stalled_mid_query_is_closed(monkeypatch: Any) -> None:
    monkeypatch.setattr(server_module, "TCP_IDLE", 0.3)
    with serving(Chain([StaticZone()])) as (_, port), _half_sent(port) as s:
        assert _closed(s), "the server closes it; it used to wait for ever"


def test_half_sent_tcp_clients_over_the_cap_leave_udp_and_tcp_answering(
        monkeypatch: Any) -> None:
    monkeypatch.setattr(server_module, "TCP_CAP", 20)
    with serving(Chain([StaticZone()])) as (_, port):
        stalled = [_half_sent(port) for _ in range(200)]
        try:
            assert answers(ask(port, "aliyun.com"))
            assert _closed(stalled[-1]), "over the cap: closed at once"
        finally:
            for s in stalled:
                s.close()
        deadline = time.monotonic() + 10
        while True:  # the server sees them close, and takes TCP again
            try:
                assert answers(ask(port, "aliyun.com", tcp=True))
                break
            except OSError:
                assert time.monotonic() < deadline, "TCP still refused after the clients left"
