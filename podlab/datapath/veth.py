"""veth + policy routing, Terway's datapath for every kernel.

The pod holds its IP as a /32 and sends everything to 169.254.1.1, a link-local address
nobody owns, resolved by a permanent neighbour entry to the node's end of the veth: the
node routes every packet. On the node, rule 512 sends traffic *to* the pod to the main
table (its /32 route via the veth) and rule 2048 sends traffic *from* the pod to the ENI's
table, so the pod's packets leave through the ENI that owns its IP, towards the vSwitch
gateway. The VPC router ARPs for the pod's IP on that ENI: a neighbour proxy entry there
answers for exactly the IPs this node hosts.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from podlab.datapath import netlink
from podlab.datapath.model import (
    DatapathError,
    EniLink,
    Interface,
    IpConfig,
    NodeLink,
    PodInterfaces,
    PodNetwork,
    Route,
)

GATEWAY = IPv4Address("169.254.1.1")
DEFAULT = IPv4Network("0.0.0.0/0")
TO_POD_PRIORITY = 512
FROM_POD_PRIORITY = 2048
HOST_PREFIX = "cali"  # Terway's prefix, so policy agents that match `cali+` see pods


def host_veth_name(pod: PodNetwork, prefix: str = HOST_PREFIX) -> str:
    """A stable 15-byte name for the node's end of a veth to the pod."""
    digest = hashlib.sha1(f"{pod.netns}/{pod.ifname}".encode()).hexdigest()
    return prefix + digest[: 15 - len(prefix)]


class VethDatapath:
    name = "veth"
    node_link = NodeLink.ROUTED

    def setup(self, node_netns: str | None, pod: PodNetwork) -> PodInterfaces:
        # Every netlink request costs ~0.7 ms of pyroute2 and this runs once per pod ADD,
        # so each step asks once: the pair is made up, with the pod end's MAC chosen here.
        host = host_veth_name(pod)
        where = node_netns or "this netns"
        with netlink.opened(node_netns) as node, netlink.opened(pod.netns) as ns:
            eni = netlink.require_link(node, pod.eni.device, where)
            pair = _ensure_pair(node, ns, host, pod)
            netlink.ensure_address(ns, pair.pod_index, str(pod.ip), 32)
            ns.neigh("replace", dst=str(GATEWAY), lladdr=pair.host_mac, ifindex=pair.pod_index,
                     state=netlink.NUD_PERMANENT)
            ns.route("replace", dst="0.0.0.0/0", gateway=str(GATEWAY), oif=pair.pod_index,
                     flags=netlink.RTNH_F_ONLINK)
            node.route("replace", dst=f"{pod.ip}/32", oif=pair.host_index,
                       scope=netlink.SCOPE_LINK)
            netlink.ensure_rule(node, TO_POD_PRIORITY, netlink.MAIN_TABLE, dst=pod.ip)
            netlink.ensure_rule(node, FROM_POD_PRIORITY, pod.eni.table, src=pod.ip)
            node.neigh("replace", dst=str(pod.ip), ifindex=eni, flags=netlink.NTF_PROXY)
        return PodInterfaces(
            interfaces=(Interface(host, pair.host_mac),
                        Interface(pod.ifname, pair.pod_mac, pod.sandbox)),
            ips=(IpConfig(IPv4Interface(f"{pod.ip}/32"), GATEWAY, 1),),
            routes=(Route(DEFAULT, GATEWAY),),
        )

    def teardown(self, node_netns: str | None, pod: PodNetwork) -> None:
        """Deleting the node's end takes the pod's end and the /32 route with it."""
        with netlink.opened(node_netns) as node:
            index = netlink.link_index(node, host_veth_name(pod))
            if index is not None:
                with netlink.tolerating(*netlink.GONE):
                    node.link("del", index=index)
            netlink.delete_host_route(node, pod.ip)
            netlink.delete_rule(node, TO_POD_PRIORITY, netlink.MAIN_TABLE, dst=pod.ip)
            netlink.delete_rule(node, FROM_POD_PRIORITY, pod.eni.table, src=pod.ip)
            eni = netlink.link_index(node, pod.eni.device)
            if eni is not None:
                with netlink.tolerating(*netlink.GONE):
                    node.neigh("del", dst=str(pod.ip), ifindex=eni, flags=netlink.NTF_PROXY)

    def check(self, node_netns: str | None, pod: PodNetwork) -> list[str]:
        problems: list[str] = []
        host = host_veth_name(pod)
        with netlink.opened(node_netns) as node:
            index = netlink.link_index(node, host)
            if index is None:
                return [f"node: no host veth {host}"]
            host_mac = netlink.link_mac(node, index)
            if netlink.host_route_oif(node, pod.ip) != index:
                problems.append(f"node: no route {pod.ip}/32 dev {host}")
            if not netlink.has_rule(node, TO_POD_PRIORITY, netlink.MAIN_TABLE, dst=pod.ip):
                problems.append(f"node: no rule {TO_POD_PRIORITY}: to {pod.ip} lookup main")
            if not netlink.has_rule(node, FROM_POD_PRIORITY, pod.eni.table, src=pod.ip):
                problems.append(f"node: no rule {FROM_POD_PRIORITY}: from {pod.ip} "
                                f"lookup {pod.eni.table}")
            problems += _check_eni(node, pod)
        problems += _check_pod(pod, host_mac)
        return problems

    def restore(self, node_netns: str | None, eni: EniLink, ips: list[IPv4Address]) -> None:
        """The neighbour proxy entries of the ENI's pods (they die with a device; the
        pods' rules name the table, which outlives it): an ENI detached and attached
        again answers ARP for them again."""
        with netlink.opened(node_netns) as node:
            index = netlink.require_link(node, eni.device, node_netns or "this netns")
            for ip in ips:
                node.neigh("replace", dst=str(ip), ifindex=index, flags=netlink.NTF_PROXY)


@dataclass(frozen=True)
class _Pair:
    host_index: int
    host_mac: str
    pod_index: int
    pod_mac: str


def _ensure_pair(node: Any, ns: Any, host: str, pod: PodNetwork) -> _Pair:
    """The veth pair, up at both ends; made once, and a half left by an interrupted setup
    is replaced. A new pod end's index is the node end's peer link (IFLA_LINK). The kernel
    brings up a new pair's node end with it, never the peer."""
    link, inner = netlink.link_by_name(node, host), netlink.link_by_name(ns, pod.ifname)
    if link is not None and inner is not None:
        node.link("set", index=link["index"], state="up")
        ns.link("set", index=inner["index"], state="up")
        return _Pair(int(link["index"]), str(link.get("address")), int(inner["index"]),
                     str(inner.get("address")))
    if link is not None:
        node.link("del", index=link["index"])
    pod_mac = random_mac()
    node.link("add", ifname=host, kind="veth", state="up",
              peer={"ifname": pod.ifname, "address": pod_mac,
                    "net_ns_fd": str(netlink.netns_path(pod.netns))})
    link = netlink.link_by_name(node, host)
    if link is None:
        raise DatapathError(f"the veth {host} vanished as it was made")
    ns.link("set", index=link.get("link"), state="up")
    return _Pair(int(link["index"]), str(link.get("address")), int(link.get("link")), pod_mac)


def random_mac() -> str:
    """A random unicast, locally administered MAC, as the kernel picks for a veth."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def _check_eni(node: Any, pod: PodNetwork) -> list[str]:
    eni = netlink.link_index(node, pod.eni.device)
    if eni is None:
        return [f"node: no ENI device {pod.eni.device}"]
    problems = []
    if not netlink.has_proxy_neighbour(node, pod.ip, eni):
        problems.append(f"node: no proxy neighbour {pod.ip} on {pod.eni.device}")
    default = netlink.default_route(node, pod.eni.table)
    if default != {"gateway": str(pod.eni.gateway), "oif": eni}:
        problems.append(f"node: table {pod.eni.table} has no default via {pod.eni.gateway} "
                        f"dev {pod.eni.device}")
    return problems


def _check_pod(pod: PodNetwork, host_mac: str) -> list[str]:
    with netlink.opened(pod.netns) as ns:
        inner = netlink.link_index(ns, pod.ifname)
        if inner is None:
            return [f"pod: no {pod.ifname}"]
        problems = []
        if f"{pod.ip}/32" not in netlink.ipv4_addresses(ns, inner):
            problems.append(f"pod: {pod.ifname} lacks {pod.ip}/32")
        if netlink.default_route(ns) != {"gateway": str(GATEWAY), "oif": inner}:
            problems.append(f"pod: no default via {GATEWAY} dev {pod.ifname}")
        neighbours = ns.get_neighbours(ifindex=inner, dst=str(GATEWAY))
        if not any(n.get("lladdr") == host_mac and n["state"] == netlink.NUD_PERMANENT
                   for n in neighbours):
            problems.append(f"pod: no permanent neighbour {GATEWAY} lladdr {host_mac}")
        return problems
