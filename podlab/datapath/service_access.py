"""Services for pods whose packets never meet the node's netfilter (exclusive ENI, ipvlan):
a second interface into the node's stack for the Service CIDR only, as Terway gives
exclusive-ENI pods a `veth1` beside the ENI. (Terway's ipvlan mode redirects the Service
CIDR with tc instead; one mechanism for both keeps the kube-proxy baseline the same on
every datapath, and works on kernels without `cls_flower`.)

The pod routes the Service CIDR and the node-local DNS address (`nodelocal`) via
169.254.1.1 on `veth1` (a permanent neighbour entry resolves it to the node's end), so
kube-proxy's rules in the node apply and the node's cache is reached. The node
masquerades what arrives this way: the backend's reply would otherwise go to the pod's IP
through the VPC, straight into the ENI, past the node's conntrack that must undo the DNAT.
The cost, written here because a user will meet it: a backend sees the node's address as
the source of Service traffic from such a pod.
"""

from __future__ import annotations

import errno
import subprocess
from ipaddress import IPv4Network

from podlab.datapath import netlink
from podlab.datapath.model import DatapathError, PodNetwork
from podlab.datapath.nodelocal import NODE_LOCAL_DNS
from podlab.datapath.veth import GATEWAY, host_veth_name

POD_IFNAME = "veth1"
HOST_PREFIX = "plsvc"
MASQ_MARK = "0x2000/0x2000"  # beside kube-proxy's 0x4000
COMMENT = "podlab: service access from pods that bypass the node"
RULES = (
    ("mangle", "PREROUTING", ["-i", f"{HOST_PREFIX}+", "-j", "MARK", "--set-xmark", MASQ_MARK]),
    ("nat", "POSTROUTING", ["-m", "mark", "--mark", MASQ_MARK, "-j", "MASQUERADE"]),
)


def attach(pod: PodNetwork, service_cidr: IPv4Network, *, host_route: bool) -> None:
    """In the caller's netns (the node): the pair, the routes, the masquerade; idempotent.
    `host_route`: the node's route back to the pod goes through the pair (the node has
    none of its own to an exclusive-ENI pod)."""
    host = host_veth_name(pod, HOST_PREFIX)
    with netlink.opened(None) as node:
        if netlink.link_index(node, host) is None:
            node.link("add", ifname=host, kind="veth", peer={
                "ifname": POD_IFNAME, "net_ns_fd": str(netlink.netns_path(pod.netns))})
        index = netlink.require_link(node, host, "the node")
        node.link("set", index=index, state="up")
        host_mac = netlink.link_mac(node, index)
        # An address on the node's end: the kernel's reverse-path check drops everything
        # arriving on an address-less device unless the route back leads through it,
        # and an ipvlan pod's route back is the node's ipvlan port. Link scope, so the
        # masquerade never picks it as a source: a pod could not answer it.
        with netlink.tolerating(errno.EEXIST):
            node.addr("add", index=index, address=str(GATEWAY), prefixlen=32,
                      scope=netlink.SCOPE_LINK)
        if host_route:
            node.route("replace", dst=f"{pod.ip}/32", oif=index, scope=netlink.SCOPE_LINK)
    with netlink.opened(pod.netns) as ns:
        inner = netlink.require_link(ns, POD_IFNAME, pod.netns)
        ns.link("set", index=inner, state="up")
        ns.neigh("replace", dst=str(GATEWAY), lladdr=host_mac, ifindex=inner,
                 state=netlink.NUD_PERMANENT)
        for dst in (str(service_cidr), f"{NODE_LOCAL_DNS}/32"):
            ns.route("replace", dst=dst, gateway=str(GATEWAY), oif=inner,
                     prefsrc=str(pod.ip), flags=netlink.RTNH_F_ONLINK)
    for table, chain, rule in RULES:
        spec = [chain, *rule, "-m", "comment", "--comment", COMMENT]
        if _iptables("-t", table, "-C", *spec).returncode != 0:
            _check(_iptables("-t", table, "-A", *spec))
    # Loose reverse-path check, for the same reason.
    netlink.sysctls(None, {"net/ipv4/ip_forward": 1, f"net/ipv4/conf/{host}/rp_filter": 2})


def detach(pod: PodNetwork) -> None:
    """Deleting the node's end takes the pod's end and the /32 route with it."""
    with netlink.opened(None) as node:
        index = netlink.link_index(node, host_veth_name(pod, HOST_PREFIX))
        if index is not None:
            with netlink.tolerating(*netlink.GONE):
                node.link("del", index=index)


def _iptables(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *argv], capture_output=True, text=True,
                          check=False)


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise DatapathError(f"{' '.join(map(str, proc.args))}: {proc.stderr.strip()}")
