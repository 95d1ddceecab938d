"""The datapaths by name, and the choice of one for a node: ipvlan where the kernel has it
(as Terway does), else veth; an explicit override wins."""

from __future__ import annotations

import errno
import functools
from ipaddress import IPv4Address
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from podlab.datapath.exclusive_eni import ExclusiveEniDatapath
from podlab.datapath.ipvlan import IpvlanDatapath
from podlab.datapath.model import (
    DatapathError,
    EniLink,
    NodeLink,
    PodInterfaces,
    PodNetwork,
)
from podlab.datapath.veth import VethDatapath


class Datapath(Protocol):
    """Plumbs one pod interface. `node_netns=None` is the netns the caller runs in.

    `node_link` declares how its pods reach the node (the agent adds the node's services
    by it, never by the datapath's name). `setup` is idempotent; `teardown` is
    best-effort and idempotent, and never fails for something already gone; `check`
    lists what differs from what `setup` made.
    """

    name: str
    node_link: NodeLink

    def setup(self, node_netns: str | None, pod: PodNetwork) -> PodInterfaces: ...

    def teardown(self, node_netns: str | None, pod: PodNetwork) -> None: ...

    def check(self, node_netns: str | None, pod: PodNetwork) -> list[str]: ...

    def restore(self, node_netns: str | None, eni: EniLink, ips: list[IPv4Address]) -> None:
        """What the ENI's pods (`ips`) lost with its device, on a new device of the same
        ENI (attached again), after `prepare_eni`."""


class UnknownDatapath(DatapathError):
    pass


DATAPATHS: dict[str, Datapath] = {
    d.name: d for d in (IpvlanDatapath(), VethDatapath(), ExclusiveEniDatapath())
}


def datapath(name: str) -> Datapath:
    try:
        return DATAPATHS[name]
    except KeyError:
        raise UnknownDatapath(f"unknown datapath {name!r}; known: {sorted(DATAPATHS)}") from None


@functools.cache
def kernel_has_ipvlan() -> bool:
    """Ask the kernel for an ipvlan on loopback: it refuses with EINVAL when it knows the
    kind (loopback cannot be a parent) and EOPNOTSUPP when it does not. Nothing is made."""
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname="plprobe0", kind="ipvlan", link=1, ipvlan_mode=0)
        except NetlinkError as e:
            if e.code in (errno.EINVAL, errno.EOPNOTSUPP):
                return bool(e.code == errno.EINVAL)
            raise DatapathError(f"cannot probe the kernel for ipvlan: {e}") from e
        ipr.link("del", ifname="plprobe0")  # a kernel that accepted it after all
        return True


def select_datapath(override: str | None = None) -> Datapath:
    """The node's datapath for shared ENIs: `override` if given, else ipvlan when the
    kernel has it, else veth."""
    if override:
        return datapath(override)
    return DATAPATHS["ipvlan" if kernel_has_ipvlan() else "veth"]
