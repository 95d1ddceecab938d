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
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from podlab.datapath import netlink
from podlab.datapath.model import Interface, IpConfig, PodInterfaces, PodNetwork, Route

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

    def setup(self, node_netns: str | None, pod: PodNetwork) -> PodInterfaces:
        host = host_veth_name(pod)
        where = node_netns or "this netns"
        with netlink.opened(node_netns) as node:
            eni = netlink.require_link(node, pod.eni.device, where)
            index = self._ensure_veth(node, host, pod)
            node.link("set", index=index, state="up")
            host_mac = netlink.link_mac(node, index)
            with netlink.opened(pod.netns) as ns:
                inner = netlink.require_link(ns, pod.ifname, pod.netns)
                ns.link("set", index=inner, state="up")
                netlink.ensure_address(ns, inner, str(pod.ip), 32)
                ns.neigh("replace", dst=str(GATEWAY), lladdr=host_mac, ifindex=inner,
                         state=netlink.NUD_PERMANENT)
                ns.route("replace", dst="0.0.0.0/0", gateway=str(GATEWAY), oif=inner,
                         flags=netlink.RTNH_F_ONLINK)
                pod_mac = netlink.link_mac(ns, inner)
            node.route("replace", dst=f"{pod.ip}/32", oif=index, scope=netlink.SCOPE_LINK)
            netlink.ensure_rule(node, TO_POD_PRIORITY, netlink.MAIN_TABLE, dst=pod.ip)
            netlink.ensure_rule(node, FROM_POD_PRIORITY, pod.eni.table, src=pod.ip)
            node.neigh("replace", dst=str(pod.ip), ifindex=eni, flags=netlink.NTF_PROXY)
        return PodInterfaces(
            interfaces=(Interface(host, host_mac), Interface(pod.ifname, pod_mac, pod.sandbox)),
            ips=(IpConfig(IPv4Interface(f"{pod.ip}/32"), GATEWAY, 1),),
            routes=(Route(DEFAULT, GATEWAY),),
        )

    @staticmethod
    def _ensure_veth(node: Any, host: str, pod: PodNetwork) -> int:
        """The pair, created once; a half left by an interrupted setup is replaced."""
        index = netlink.link_index(node, host)
        if index is not None and netlink.has_link(pod.netns, pod.ifname):
            return index
        if index is not None:
            node.link("del", index=index)
        node.link("add", ifname=host, kind="veth",
                  peer={"ifname": pod.ifname, "net_ns_fd": str(netlink.netns_path(pod.netns))})
        return netlink.require_link(node, host, "the node")

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
