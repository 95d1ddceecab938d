"""The values a datapath is given (an ENI as the node sees it, a pod's address) and what it
hands back for the CNI result. No clouds, no pools: an IP, a gateway, a device and a netns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class NodeLink(Enum):
    """How a datapath's pod reaches its own node, which decides what must be added for the
    node's services (a Service path under kube-proxy, the node-local DNS address)."""

    ROUTED = "routed"  # veth: the node is the pod's gateway and routes all it sends
    PORT = "port"  # ipvlan: the pod's packets leave by the ENI; the node reaches the pod
    # through its own ipvlan port on that ENI, the pod reaches the node only by its address
    NONE = "none"  # exclusive ENI: no link; the node has no route of its own to the pod

    @property
    def bypasses_node(self) -> bool:
        """Whether the pod's packets leave without meeting the node's stack."""
        return self is not NodeLink.ROUTED


class DatapathError(Exception):
    """The datapath could not plumb (or unplumb) a pod; the message names what and where."""


@dataclass(frozen=True)
class EniLink:
    """An attached ENI as its node sees it. `table` is the policy-routing table holding the
    ENI's default route (a function of the MAC, so it survives a re-attach; `eni_table`)."""

    device: str
    mac: str
    gateway: IPv4Address
    cidr: IPv4Network
    table: int


@dataclass(frozen=True)
class PodNetwork:
    """One pod interface to plumb: `netns` is a name under /run/netns or an absolute path."""

    netns: str
    ip: IPv4Address
    eni: EniLink
    ifname: str = "eth0"

    @property
    def sandbox(self) -> str:
        """The netns path, as the CNI result's `sandbox` names it."""
        return self.netns if "/" in self.netns else str(NETNS_DIR / self.netns)


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    sandbox: str | None = None  # None: the interface is on the node


@dataclass(frozen=True)
class IpConfig:
    address: IPv4Interface
    gateway: IPv4Address
    interface: int  # index into PodInterfaces.interfaces


@dataclass(frozen=True)
class Route:
    dst: IPv4Network
    gw: IPv4Address


@dataclass(frozen=True)
class PodInterfaces:
    """What the CNI result reports for one pod: its interfaces, addresses and routes."""

    interfaces: tuple[Interface, ...]
    ips: tuple[IpConfig, ...]
    routes: tuple[Route, ...]
