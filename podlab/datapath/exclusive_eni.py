"""Exclusive ENI: the whole ENI device moves into the pod, renamed to the pod's interface,
with its IP (vSwitch mask) and a default route via the vSwitch gateway. The node keeps no
state for the pod; on teardown the device returns to the node under its own name, down
(the kernel drops a device's addresses and routes when it changes namespace).
Such an ENI is not prepared with `prepare_eni`: nothing on the node routes through it.
"""

from __future__ import annotations

import os
import threading
from ipaddress import IPv4Address
from typing import Any

from podlab.datapath import netlink
from podlab.datapath.model import (
    DatapathError,
    EniLink,
    NodeLink,
    PodInterfaces,
    PodNetwork,
)
from podlab.datapath.on_vswitch import check_pod_side, configure_pod_side


class ExclusiveEniDatapath:
    name = "exclusive-eni"
    node_link = NodeLink.NONE

    def setup(self, node_netns: str | None, pod: PodNetwork) -> PodInterfaces:
        with netlink.opened(node_netns) as node:
            index = netlink.link_index(node, pod.eni.device)
            if index is not None:
                node.link("set", index=index, state="down")
                node.link("set", index=index, ifname=pod.ifname,
                          net_ns_fd=str(netlink.netns_path(pod.netns)))
        with netlink.opened(pod.netns) as ns:
            inner = eni_in_pod(ns, pod.ifname, pod.eni.mac)
            if inner is None:
                raise DatapathError(f"ENI {pod.eni.device} ({pod.eni.mac}) is neither on the "
                                    f"node nor in {pod.netns} as {pod.ifname}")
            return configure_pod_side(ns, inner, pod)

    def teardown(self, node_netns: str | None, pod: PodNetwork) -> None:
        """Hand the ENI back; if the pod's netns is already gone, so is the ENI's place in it."""
        if not netlink.netns_path(pod.netns).exists():
            return
        with netlink.opened(pod.netns) as ns:
            inner = eni_in_pod(ns, pod.ifname, pod.eni.mac)
            if inner is None:
                return
            ns.link("set", index=inner, state="down")
            ns.link("set", index=inner, ifname=pod.eni.device, net_ns_fd=_node_ns_fd(node_netns))

    def check(self, node_netns: str | None, pod: PodNetwork) -> list[str]:
        with netlink.opened(pod.netns) as ns:
            inner = eni_in_pod(ns, pod.ifname, pod.eni.mac)
            if inner is None:
                return [f"pod: no {pod.ifname} with the ENI's MAC {pod.eni.mac}"]
            return check_pod_side(ns, inner, pod)

    def restore(self, node_netns: str | None, eni: EniLink, ips: list[IPv4Address]) -> None:
        """Nothing: its pod held the device itself: nothing on the node to restore."""


def eni_in_pod(ns: Any, ifname: str, mac: str) -> int | None:
    """The index of the pod's `ifname` if it is the ENI with `mac`."""
    index = netlink.link_index(ns, ifname)
    if index is None or netlink.link_mac(ns, index).lower() != mac.lower():
        return None
    return index


def _node_ns_fd(node_netns: str | None) -> str:
    """Where to send the device back: the named node netns, or the calling thread's own."""
    if node_netns is not None:
        return str(netlink.netns_path(node_netns))
    return f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
