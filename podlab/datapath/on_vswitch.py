"""The pod side shared by ipvlan and exclusive ENI: the pod's interface sits on the vSwitch
itself, so it carries the pod IP with the vSwitch's mask and routes via the vSwitch gateway."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from podlab.datapath import netlink
from podlab.datapath.model import Interface, IpConfig, PodInterfaces, PodNetwork, Route

DEFAULT = IPv4Network("0.0.0.0/0")


def configure_pod_side(ns: Any, index: int, pod: PodNetwork) -> PodInterfaces:
    """Bring the pod's interface up with its address and default route; the CNI result."""
    address = IPv4Interface(f"{pod.ip}/{pod.eni.cidr.prefixlen}")
    ns.link("set", index=index, state="up")
    netlink.ensure_address(ns, index, str(pod.ip), address.network.prefixlen)
    ns.route("replace", dst="0.0.0.0/0", gateway=str(pod.eni.gateway), oif=index)
    return PodInterfaces(
        interfaces=(Interface(pod.ifname, pod.eni.mac, pod.sandbox),),
        ips=(IpConfig(address, pod.eni.gateway, 0),),
        routes=(Route(DEFAULT, pod.eni.gateway),),
    )


def check_pod_side(ns: Any, index: int, pod: PodNetwork) -> list[str]:
    """What `configure_pod_side` made that is no longer there."""
    problems = []
    address = f"{pod.ip}/{pod.eni.cidr.prefixlen}"
    if address not in netlink.ipv4_addresses(ns, index):
        problems.append(f"pod: {pod.ifname} lacks {address}")
    if netlink.default_route(ns) != {"gateway": str(pod.eni.gateway), "oif": index}:
        problems.append(f"pod: no default via {pod.eni.gateway} dev {pod.ifname}")
    return problems
