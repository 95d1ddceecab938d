"""The datapath's policy lookup, in Python, over a compiled `PolicyState` per node.

What the tc programs do for a new connection (docs/netpol.md), without the kernel: the
peer's identities are its exact address in `pods` and the longest `cidrs` prefix holding
it; a direction allows the connection when it is not isolated, when the peer is the
node itself, or when a rule allows one of those identities, or ANY_IDENTITY, on the
protocol and port. TCP and UDP are matched by port; any other protocol only by a rule
for every port of it (the programs parse no SCTP ports). Both ends' nodes enforce: egress
at the source's, ingress at the destination's.

    allowed({"n1": state1, "n2": state2}, "10.0.0.5", "10.0.1.7", "tcp", 80) -> bool
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from podlab.datapath.bpf.policy_model import (
    ANY_IDENTITY,
    ANY_PROTOCOL,
    HOST_IDENTITY,
    PolicyState,
    Rule,
)

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}
PORTED = (6, 17)  # the protocols whose ports the programs read


def protocol_number(protocol: str | int) -> int:
    """"tcp"/"TCP"/6 -> 6."""
    return protocol if isinstance(protocol, int) else PROTOCOLS[protocol.lower()]


def peer_identities(state: PolicyState, ip: str) -> set[int]:
    """The identities the programs find for `ip`: its pod's (or the host's), and the
    CIDR identity of the longest prefix that holds it."""
    found = {state.pods[ip]} if ip in state.pods else set()
    address = ipaddress.ip_address(ip)
    holding = [ipaddress.ip_network(p) for p in state.cidrs
               if address in ipaddress.ip_network(p)]
    if holding:
        longest = max(holding, key=lambda n: n.prefixlen)
        found.add(state.cidrs[str(longest)])
    return found


def rule_allows(rule: Rule, identities: set[int], protocol: int, port: int) -> bool:
    if rule.identity != ANY_IDENTITY and rule.identity not in identities:
        return False
    if rule.protocol == ANY_PROTOCOL:
        return True
    if rule.protocol != protocol:
        return False
    if protocol not in PORTED:
        port = 0
    return rule.port == 0 or rule.port <= port <= (rule.end_port or rule.port)


def admits(state: PolicyState, rules: frozenset[Rule] | None, peer: str,
           protocol: str | int, port: int) -> bool:
    """Whether a local pod's `rules` for one direction (None: not isolated) admit a new
    connection with `peer`."""
    if rules is None:
        return True
    identities = peer_identities(state, peer)
    if HOST_IDENTITY in identities:
        return True
    number = protocol_number(protocol)
    return any(rule_allows(r, identities, number, port) for r in rules)


def node_of(states: Mapping[str, PolicyState], ip: str) -> PolicyState | None:
    """The state of the node whose pod has `ip`, or None for an address of no local pod."""
    return next((s for s in states.values() if ip in s.endpoints), None)


def egress_allowed(states: Mapping[str, PolicyState], src: str, dst: str,
                   protocol: str | int, port: int) -> bool:
    """The source's side: its node's egress check (none for a source that is no pod)."""
    here = node_of(states, src)
    return here is None or admits(here, here.endpoints[src].egress, dst, protocol, port)


def ingress_allowed(states: Mapping[str, PolicyState], src: str, dst: str,
                    protocol: str | int, port: int) -> bool:
    """The destination's side: its node's ingress check (none for a destination that is
    no pod)."""
    there = node_of(states, dst)
    return there is None or admits(there, there.endpoints[dst].ingress, src, protocol, port)


def allowed(states: Mapping[str, PolicyState], src: str, dst: str, protocol: str | int,
            port: int) -> bool:
    """A new connection from `src` to `dst` (addresses; pods or not) on `protocol` ("tcp",
    "udp", "sctp", "icmp" or a number) and `port`. A pod reaching itself never leaves its
    netns (loopback), so it is always allowed, as upstream's Reachability has it."""
    if src == dst:
        return True
    return (egress_allowed(states, src, dst, protocol, port)
            and ingress_allowed(states, src, dst, protocol, port))
