"""NetworkPolicy enforced by the tc programs on each pod's own eth0, real TCP, UDP and ICMP."""

from __future__ import annotations

import dataclasses
import socket
import subprocess

import pytest

from podlab.datapath.bpf import Conntrack, Service, ServicePort
from podlab.datapath.bpf.policy_model import ANY_IDENTITY, FIRST_CIDR_IDENTITY, Rule
from tests.e2e.bpf.conftest import PolicySetup
from tests.e2e.bpf.world import (
    VIP,
    abort,
    read_line,
    tcp_connect,
    tcp_hello,
    udp_ask,
    udp_connected,
)

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool")]
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP
DENY: frozenset[Rule] = frozenset()
# A dropped SYN shows as a connect timeout; an allowed handshake on one host takes < 10 ms.
DROPPED_AFTER = 1.5


def tcp_reaches(netns: str, ip: str, port: int = 8080) -> bool:
    try:
        sock, _ = tcp_connect(netns, ip, port, timeout=DROPPED_AFTER)
    except TimeoutError:
        return False
    abort(sock)
    return True


def udp_reaches(netns: str, ip: str, port: int = 8080) -> bool:
    try:
        udp_ask(netns, ip, port, timeout=DROPPED_AFTER)
    except TimeoutError:
        return False
    return True


def pings(netns: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c1", "-W1", ip],
                          capture_output=True, check=False).returncode == 0


def ns(pol: PolicySetup, pod: str) -> str:
    return pol.world.pods[pod].netns


def test_default_deny_ingress_isolates_only_the_selected_pod(pol: PolicySetup) -> None:
    pol.sync(ingress={"b": DENY})
    assert not tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not udp_reaches(ns(pol, "a"), pol.ip("b"))
    assert tcp_reaches(ns(pol, "a"), pol.ip("c"))
    assert tcp_reaches(ns(pol, "b"), pol.ip("a"))  # b's own connections and their replies


def test_default_deny_egress_blocks_new_connections_not_replies(pol: PolicySetup) -> None:
    pol.sync(egress={"a": DENY})
    assert not tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not udp_reaches(ns(pol, "a"), pol.ip("b"))
    assert tcp_reaches(ns(pol, "b"), pol.ip("a"))
    assert udp_reaches(ns(pol, "b"), pol.ip("a"))


def test_allow_by_pod_identity(pol: PolicySetup) -> None:
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"))})})
    assert tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert udp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not tcp_reaches(ns(pol, "c"), pol.ip("b"))


def test_allow_by_cidr_except_denies_an_address_inside_the_except(pol: PolicySetup) -> None:
    # ipBlock 10.77.0.0/16 except c's /24: the except prefix has its own identity, which
    # no rule allows, and is the longest match for c.
    block, hole = FIRST_CIDR_IDENTITY, FIRST_CIDR_IDENTITY + 1
    cidrs = {"10.77.0.0/16": block, f"10.77.{pol.world.pods['c'].index}.0/24": hole}
    pol.sync(ingress={"b": frozenset({Rule(block)})}, cidrs=cidrs)
    assert tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not tcp_reaches(ns(pol, "c"), pol.ip("b"))


def test_allow_by_port_and_by_port_range_end_port_included(pol: PolicySetup) -> None:
    for port in (8999, 9000, 9100, 9101):
        pol.world.serve("b", port, name=f"b{port}")
    a, b = ns(pol, "a"), pol.ip("b")
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"), TCP, 8080)})})
    assert tcp_reaches(a, b, 8080)
    assert not tcp_reaches(a, b, 9000)
    assert not udp_reaches(a, b, 8080)  # the rule's protocol is TCP
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"), TCP, 9000, 9100)})})
    assert [tcp_reaches(a, b, p) for p in (8999, 9000, 9100, 9101, 8080)] == [
        False, True, True, False, False]


def test_a_protocol_only_rule_allows_every_port_of_that_protocol(pol: PolicySetup) -> None:
    pol.world.serve("b", 5353, name="b5353")
    pol.sync(ingress={"b": frozenset({Rule(pol.identity("a"), UDP)})})
    a, b = ns(pol, "a"), pol.ip("b")
    assert udp_reaches(a, b, 8080)
    assert udp_reaches(a, b, 5353)
    assert not tcp_reaches(a, b, 8080)


def test_any_identity_allows_every_peer_even_one_no_map_knows(pol: PolicySetup) -> None:
    state = pol.state(ingress={"b": frozenset({Rule(ANY_IDENTITY, TCP, 8080)})})
    unknown_a = {ip: i for ip, i in state.pods.items() if ip != pol.ip("a")}
    pol.maps.sync(dataclasses.replace(state, pods=unknown_a))
    assert tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert tcp_reaches(ns(pol, "c"), pol.ip("b"))
    assert not udp_reaches(ns(pol, "c"), pol.ip("b"))


def test_replies_pass_both_ways_when_both_directions_are_isolated(pol: PolicySetup) -> None:
    a_id, b_id = pol.identity("a"), pol.identity("b")
    pol.sync(ingress={"a": DENY, "b": frozenset({Rule(a_id, TCP, 8080), Rule(a_id, UDP, 8080)})},
             egress={"a": frozenset({Rule(b_id, TCP, 8080), Rule(b_id, UDP, 8080)}),
                     "b": DENY})
    sock, line = tcp_connect(ns(pol, "a"), pol.ip("b"), 8080)
    assert line.startswith("b ")
    for _ in range(3):
        sock.sendall(b"more\n")
        assert read_line(sock).startswith("b ")
    sock.close()
    assert udp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not tcp_reaches(ns(pol, "b"), pol.ip("a"))  # the other way round is new


def test_an_established_connection_outlives_a_deny_and_new_ones_meet_it(
        pol: PolicySetup) -> None:
    held, _ = tcp_connect(ns(pol, "a"), pol.ip("b"), 8080)
    pol.sync(ingress={"b": DENY})
    held.sendall(b"still there?\n")
    assert read_line(held).startswith("b ")
    held.close()
    assert not tcp_reaches(ns(pol, "a"), pol.ip("b"))


def test_forgetting_an_address_ends_its_connections_for_the_policy(pol: PolicySetup) -> None:
    # A pod gone (DEL forgets its address): a later pod with the address must not inherit
    # a flow its own policy would not admit.
    sock = udp_connected(ns(pol, "a"), pol.ip("b"), 8080)
    assert udp_ask(ns(pol, "a"), pol.ip("b"), 8080, sock=sock)[0].startswith("b ")
    pol.sync(ingress={"b": DENY})
    assert udp_ask(ns(pol, "a"), pol.ip("b"), 8080, sock=sock)[0].startswith("b ")
    ct = Conntrack(pol.world.pin_dir)
    pol.world.cleanups.append(ct.close)
    assert ct.forget(pol.ip("b")) >= 2  # the flow's entry at a's egress and at b's ingress
    with pytest.raises(TimeoutError):
        udp_ask(ns(pol, "a"), pol.ip("b"), 8080, sock=sock, timeout=DROPPED_AFTER)
    sock.close()


def test_a_syn_on_the_tuple_of_a_live_connection_meets_the_new_policy(pol: PolicySetup) -> None:
    old, _ = tcp_connect(ns(pol, "a"), pol.ip("b"), 8080, sport=40200)
    abort(old)  # its entries live on (closing) for a while
    pol.sync(ingress={"b": DENY})
    with pytest.raises(TimeoutError):
        tcp_connect(ns(pol, "a"), pol.ip("b"), 8080, sport=40200, timeout=DROPPED_AFTER)


def test_the_node_is_always_allowed(pol: PolicySetup) -> None:
    router, b = pol.world.router, pol.ip("b")
    pol.sync(ingress={"b": DENY}, egress={"b": DENY})
    assert tcp_reaches(router, b)
    assert not tcp_reaches(ns(pol, "a"), b)
    pol.sync(ingress={"b": DENY}, egress={"b": DENY}, host=False)  # the node not known
    assert not tcp_reaches(router, b)


def test_icmp_matches_only_rules_without_ports(pol: PolicySetup) -> None:
    a, b, a_id = ns(pol, "a"), pol.ip("b"), pol.identity("a")
    pol.sync(ingress={"b": frozenset({Rule(a_id, TCP), Rule(a_id, UDP, 8080)})})
    assert not pings(a, b)  # every TCP port is not "any protocol"
    pol.sync(ingress={"b": frozenset({Rule(a_id)})})
    assert pings(a, b)


def test_an_icmp_error_about_a_connection_passes_like_its_replies(pol: PolicySetup) -> None:
    # b has no UDP socket on 5353: its port unreachable reaches a, isolated on ingress,
    # as the connection's own, directly and through a Service (translated back by the LB).
    pol.services.sync([Service(VIP, (ServicePort(53, "udp", (pol.world.backend("b", 5353),)),))])
    pol.sync(ingress={"a": DENY})
    a = ns(pol, "a")
    for ip, port in ((pol.ip("b"), 5353), (VIP, 53)):
        with pytest.raises(ConnectionRefusedError):
            udp_ask(a, ip, port, sock=udp_connected(a, ip, port), timeout=DROPPED_AFTER)


def test_egress_policy_sees_the_backend_after_the_lb_translation(pol: PolicySetup) -> None:
    pol.services.sync([Service(VIP, (ServicePort(80, "tcp", (pol.world.backend("b"),)),))])
    a = ns(pol, "a")
    pol.sync(egress={"a": frozenset({Rule(pol.identity("b"), TCP, 8080)})})
    assert tcp_hello(a, VIP, 80).startswith("b ")
    pol.sync(egress={"a": frozenset({Rule(pol.identity("c"), TCP, 8080)})})
    assert not tcp_reaches(a, VIP, 80)


def test_a_pod_under_default_deny_reaches_itself_through_its_service(pol: PolicySetup) -> None:
    pol.services.sync([Service(VIP, (ServicePort(80, "tcp", (pol.world.backend("a"),)),))])
    pol.sync(ingress={"a": DENY}, egress={"a": DENY})
    sock, line = tcp_connect(ns(pol, "a"), VIP, 80)
    assert line.startswith("a ")
    sock.sendall(b"again\n")
    assert read_line(sock).startswith("a ")
    sock.close()
