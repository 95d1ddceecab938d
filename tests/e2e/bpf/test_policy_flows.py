"""The policy programs' flows (ring buffer), allow sampling and counters."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from podlab.datapath.bpf import Flow, FlowReader, policy_counters, set_allow_sampling
from podlab.datapath.bpf.policy_model import Rule
from tests.e2e.bpf.conftest import PolicySetup
from tests.e2e.bpf.test_policy import DENY, TCP, ns, tcp_reaches, udp_reaches
from tests.e2e.bpf.world import socket_in, tcp_hello

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool")]


@pytest.fixture
def reader(pol: PolicySetup) -> FlowReader:
    r = FlowReader(pol.world.pin_dir)
    pol.world.cleanups.append(r.close)
    return r


def drain(reader: FlowReader, until: int = 1, timeout: float = 5.0) -> list[Flow]:
    """Every flow there is, waiting up to `timeout` for at least `until` of them."""
    flows: list[Flow] = []
    end = time.monotonic() + timeout
    while True:
        batch = reader.poll(50)
        flows += batch
        if (len(flows) >= until and not batch) or time.monotonic() > end:
            return flows


def test_a_drop_is_a_flow_with_its_tuple_direction_identities_and_reason(
        pol: PolicySetup, reader: FlowReader) -> None:
    a, b, c = pol.ip("a"), pol.ip("b"), pol.ip("c")
    pol.sync(ingress={"b": DENY}, egress={"a": frozenset({Rule(pol.identity("c"), TCP, 8080)})})
    sock = socket_in(ns(pol, "a"))
    sock.bind(("0.0.0.0", 40100))
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.connect((b, 8080))
    sock.close()
    assert not udp_reaches(ns(pol, "c"), b)
    flows = [dataclasses.replace(f, ts_ns=0, sport=f.sport if f.protocol == "tcp" else 0)
             for f in drain(reader, 2)]
    assert flows[0] == Flow(0, "dropped", "egress", "no-policy-allows", "tcp", a, b, 40100, 8080,
                            pol.identity("a"), pol.identity("b"), a)
    assert flows[-1] == Flow(0, "dropped", "ingress", "default-deny", "udp", c, b, 0, 8080,
                             pol.identity("c"), pol.identity("b"), b)


def test_allowed_new_connections_are_flows_only_when_sampled(
        pol: PolicySetup, reader: FlowReader) -> None:
    a, b = ns(pol, "a"), pol.ip("b")
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"), TCP, 8080)})})
    tcp_hello(a, b, 8080)
    set_allow_sampling(pol.world.pin_dir, 1)
    tcp_hello(a, b, 8080)
    set_allow_sampling(pol.world.pin_dir, 0)
    tcp_hello(a, b, 8080)
    assert not tcp_reaches(ns(pol, "c"), b)  # a drop: the end of what is to be read
    flows = drain(reader, 2)
    allowed = [(f.verdict, f.direction, f.reason, f.endpoint) for f in flows
               if f.verdict == "allowed"]
    # One connection sampled, at both ends: a's egress (no policy) and b's ingress (a rule).
    assert allowed == [("allowed", "egress", "not-isolated", pol.ip("a")),
                       ("allowed", "ingress", "policy-allows", b)]
    assert {f.verdict for f in flows[len(allowed):]} == {"dropped"}


def test_sampling_one_in_n_keeps_about_one_in_n(pol: PolicySetup, reader: FlowReader) -> None:
    set_allow_sampling(pol.world.pin_dir, 4)
    for _ in range(200):  # 400 new connections: an egress and an ingress each
        tcp_hello(ns(pol, "a"), pol.ip("b"), 8080)
    kept = len(drain(reader, 1))
    assert 50 < kept < 150, kept  # binomial(400, 1/4): 100 +- 8.7
    with pytest.raises(ValueError, match="1 in -1"):
        set_allow_sampling(pol.world.pin_dir, -1)


def test_counters_count_drops_by_reason_and_allows(pol: PolicySetup, reader: FlowReader) -> None:
    b = pol.ip("b")
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"), TCP, 8080)}), "c": DENY})
    assert tcp_reaches(ns(pol, "a"), b)
    assert not tcp_reaches(ns(pol, "c"), b)
    assert not tcp_reaches(ns(pol, "a"), pol.ip("c"))
    seen = policy_counters(pol.world.pin_dir)
    flows = drain(reader, 2)
    for reason in ("default-deny", "no-policy-allows"):
        dropped = sum(1 for f in flows if f.reason == reason)
        assert dropped >= 1
        assert seen[reason.replace("-", "_")] == dropped  # one event per dropped packet
    assert seen["policy_allows"] == 1  # b's ingress, a's connection
    # Every SYN leaves its client's egress (not isolated) as new: a's that b let in, and
    # each one dropped (retransmissions included).
    assert seen["not_isolated"] == 1 + len(flows)
    assert seen["established"] >= 4  # handshakes' ACKs and the answers
    assert (seen["ct_full"], seen["events_lost"]) == (0, 0)


def test_a_udp_reply_is_established_not_a_new_connection(pol: PolicySetup) -> None:
    pol.sync(egress={"b": DENY})
    sock = socket_in(ns(pol, "a"), socket.SOCK_DGRAM)
    sock.settimeout(3)
    for _ in range(3):
        sock.sendto(b"?", (pol.ip("b"), 8080))
        assert sock.recvfrom(2048)[0].startswith(b"b ")
    sock.close()
    seen = policy_counters(pol.world.pin_dir)
    assert (seen["not_isolated"], seen["default_deny"]) == (2, 0)  # a's egress, b's ingress
