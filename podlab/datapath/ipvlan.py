"""ipvlan L2, Terway's shared-ENI default: the pod's interface is an ipvlan child of the ENI.

All children share the ENI's MAC; the ipvlan driver hands each frame to the child that
owns its destination IP, so the pod sits directly on the vSwitch with its IP and the
vSwitch mask, default via the vSwitch gateway, and the node routes none of its traffic.
A child cannot reach its parent's own stack, so the node gets an ipvlan child of its own
(`ipvl_<ENI ifindex>`, shared by the ENI's pods) and a /32 route to each pod through it.
That child also holds the node's own IP as a /32 (the source the node uses towards the
vSwitch gateway): ipvlan delivers a frame to the child that owns its destination IP, so
the pods' ARP replies and packets to the node land on it rather than leaving by the wire.
"""

from __future__ import annotations

import errno
import hashlib
import socket
from ipaddress import IPv4Address
from typing import Any

from podlab.datapath import netlink
from podlab.datapath.model import EniLink, NodeLink, PodInterfaces, PodNetwork
from podlab.datapath.on_vswitch import check_pod_side, configure_pod_side

IPVLAN_MODE_L2 = 0
HOST_SLAVE_PREFIX = "ipvl_"


def host_slave_name(eni_index: int) -> str:
    return f"{HOST_SLAVE_PREFIX}{eni_index}"


class IpvlanDatapath:
    name = "ipvlan"
    node_link = NodeLink.PORT

    def setup(self, node_netns: str | None, pod: PodNetwork) -> PodInterfaces:
        with netlink.opened(node_netns) as node:
            eni = netlink.require_link(node, pod.eni.device, node_netns or "this netns")
            slave = _ensure_host_slave(node, eni, netlink.source_towards(node, pod.eni.gateway))
            if not netlink.has_link(pod.netns, pod.ifname):
                _add_pod_child(node, eni, pod)
            node.route("replace", dst=f"{pod.ip}/32", oif=slave, scope=netlink.SCOPE_LINK)
        with netlink.opened(pod.netns) as ns:
            inner = netlink.require_link(ns, pod.ifname, pod.netns)
            return configure_pod_side(ns, inner, pod)

    def teardown(self, node_netns: str | None, pod: PodNetwork) -> None:
        """The pod's child goes; the node's child goes with the ENI's last pod route."""
        if netlink.netns_path(pod.netns).exists() and netlink.has_link(pod.netns, pod.ifname):
            with netlink.opened(pod.netns) as ns, netlink.tolerating(*netlink.GONE):
                ns.link("del", index=netlink.require_link(ns, pod.ifname, pod.netns))
        with netlink.opened(node_netns) as node:
            netlink.delete_host_route(node, pod.ip)
            eni = netlink.link_index(node, pod.eni.device)
            slave = None if eni is None else netlink.link_index(node, host_slave_name(eni))
            if slave is not None and not node.get_routes(family=socket.AF_INET, oif=slave,
                                                          table=netlink.MAIN_TABLE):
                with netlink.tolerating(*netlink.GONE):
                    node.link("del", index=slave)

    def check(self, node_netns: str | None, pod: PodNetwork) -> list[str]:
        problems = []
        with netlink.opened(node_netns) as node:
            eni = netlink.link_index(node, pod.eni.device)
            if eni is None:
                return [f"node: no ENI device {pod.eni.device}"]
            name = host_slave_name(eni)
            slave = netlink.link_index(node, name)
            if slave is None:
                problems.append(f"node: no host ipvlan {name}")
            elif netlink.host_route_oif(node, pod.ip) != slave:
                problems.append(f"node: no route {pod.ip}/32 dev {name}")
        with netlink.opened(pod.netns) as ns:
            inner = netlink.link_index(ns, pod.ifname)
            if inner is None or netlink.link_kind(ns, inner) != "ipvlan":
                return [*problems, f"pod: no ipvlan {pod.ifname}"]
            return [*problems, *check_pod_side(ns, inner, pod)]

    def restore(self, node_netns: str | None, eni: EniLink, ips: list[IPv4Address]) -> None:
        """Nothing: its pods' children died with the old device: their sandboxes are recreated."""


def _add_pod_child(node: Any, eni: int, pod: PodNetwork) -> None:
    """Made on the node under a name of its own (the pod's name is likely taken there),
    then moved into the pod and renamed in one step."""
    temporary = "ipvt" + hashlib.sha1(pod.netns.encode()).hexdigest()[:11]
    with netlink.tolerating(errno.EEXIST):  # left by an interrupted setup
        node.link("add", ifname=temporary, kind="ipvlan", link=eni, ipvlan_mode=IPVLAN_MODE_L2)
    node.link("set", index=netlink.require_link(node, temporary, "the node"),
              ifname=pod.ifname, net_ns_fd=str(netlink.netns_path(pod.netns)))


def _ensure_host_slave(node: Any, eni: int, host_ip: str) -> int:
    name = host_slave_name(eni)
    with netlink.tolerating(errno.EEXIST):  # another pod's setup made it first
        node.link("add", ifname=name, kind="ipvlan", link=eni, ipvlan_mode=IPVLAN_MODE_L2)
    index = netlink.require_link(node, name, "the node")
    netlink.ensure_address(node, index, host_ip, 32)
    node.link("set", index=index, state="up")
    return index
