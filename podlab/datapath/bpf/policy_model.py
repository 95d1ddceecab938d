"""NetworkPolicy as the datapath enforces it: identities, allow rules and endpoints.

Kubernetes' selectors are compiled away before they get here (podlab.cni.policy): the
datapath knows only numbers. A packet's peer has up to two identities, its pod's (by exact
address) and the most specific CIDR an ipBlock names (by longest prefix), and a local pod's
direction allows it when a rule allows either of them, or any peer, on its protocol and port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ANY_IDENTITY = 0  # a rule's peer: every address
HOST_IDENTITY = 1  # the pod's own node: always allowed, as Kubernetes documents
WORLD_IDENTITY = 2  # neither a pod nor the node (shown in flows; never in a rule)
FIRST_POD_IDENTITY = 256  # pod identities are in [FIRST_POD_IDENTITY, FIRST_CIDR_IDENTITY)
FIRST_CIDR_IDENTITY = 1 << 24  # CIDR identities are in [FIRST_CIDR_IDENTITY, 2**32)
ANY_PROTOCOL = 0  # with port 0: every protocol and port (a rule without ports)


@dataclass(frozen=True, order=True)
class Rule:
    """Allow `identity` on `protocol` (an IPPROTO_* number) at `port`..`end_port`.

    `protocol` ANY_PROTOCOL allows every protocol and port; `port` 0 every port of
    `protocol`; `end_port` 0 just `port`."""

    identity: int
    protocol: int = ANY_PROTOCOL
    port: int = 0
    end_port: int = 0


@dataclass(frozen=True)
class Endpoint:
    """A local pod's enforcement, per direction: None where no policy selects the pod for
    it (everything allowed), else the rules' union; an empty set is default deny.
    `ingress_policies`/`egress_policies` name (ns/name) the policies that isolate it."""

    ip: str
    identity: int
    ingress: frozenset[Rule] | None = None
    egress: frozenset[Rule] | None = None
    ingress_policies: tuple[str, ...] = ()
    egress_policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyState:
    """Everything one node's maps hold.

    `pods`: every pod address of the cluster -> its identity, and each of the node's own
    addresses -> HOST_IDENTITY. `cidrs`: each prefix an ipBlock names ("10.0.0.0/16", its
    `except` prefixes too) -> its CIDR identity. `endpoints`: the node's own pods, by address.
    `labels`: identity -> what it stands for ("ns=x pod=a" ...), for flows."""

    pods: Mapping[str, int] = field(default_factory=dict)
    cidrs: Mapping[str, int] = field(default_factory=dict)
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    labels: Mapping[int, str] = field(default_factory=dict)
