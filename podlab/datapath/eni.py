"""Bringing a hot-plugged ENI into service on its node, for the shared-ENI datapaths.

A freshly attached ENI appears down, with its MAC and no address. Pods' traffic leaves
through it by policy routing (veth) or by being its ipvlan children (ipvlan), so it gets
its own routing table whose default route goes to the vSwitch gateway on that device.
An exclusive ENI is not prepared: it moves into its pod whole.

The table is a function of the ENI's MAC, not of its device: an ENI detached and attached
again comes back as a new device with a new ifindex, and its pods' rules, which name the
table, must still lead out through it once `prepare_eni` has filled the table again.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import time
from ipaddress import IPv4Address, IPv4Network

from podlab.datapath import netlink
from podlab.datapath.model import DatapathError, EniLink

TABLE_BASE = 1000
DEVICE_WAIT = 10.0  # seconds a just-attached ENI's device may take to appear
SIOCGIFHWADDR = 0x8927  # linux/sockios.h


def eni_table(mac: str) -> int:
    """The ENI's routing table: 1000 + the last three octets of its MAC, the part an OUI
    leaves to the NIC (every ECS ENI is 00:16:3e:xx:xx:xx, so unique in a region). Terway
    uses 1000 + the device's ifindex, which a re-attached ENI does not keep."""
    return TABLE_BASE + int("".join(mac.split(":")[3:]), 16)


def eni_device(node_netns: str | None, mac: str, timeout: float = DEVICE_WAIT
               ) -> tuple[str, int]:
    """The node's device with `mac` (name, ifindex), waiting for a hot-plugged one: the
    one way an ENI is found (its device name is the kernel's, its MAC the cloud's)."""
    deadline = time.monotonic() + timeout
    while True:
        with netlink.opened(node_netns) as ns:
            for link in ns.get_links():
                if (link.get("IFLA_ADDRESS") or "").lower() == mac.lower():
                    return str(link.get("IFLA_IFNAME")), int(link["index"])
        if time.monotonic() > deadline:
            raise DatapathError(f"no device with MAC {mac} appeared within {timeout:.0f}s")
        time.sleep(0.05)  # polling the kernel for the hot-plug, with a deadline


def eni_on_node(node_netns: str | None, mac: str, gateway: IPv4Address, cidr: IPv4Network,
                timeout: float = DEVICE_WAIT) -> EniLink:
    """The attached ENI with `mac` as its node sees it."""
    device, _ = eni_device(node_netns, mac, timeout)
    return EniLink(device, mac.lower(), gateway, cidr, eni_table(mac))


def still_there(eni: EniLink, index: int) -> bool:
    """Whether the ENI's device (in the caller's netns) still has the index and MAC it was
    found with: a detached and re-attached ENI is a new device. Two ioctls, where a
    pyroute2 socket and request cost ~1.5 ms on every ADD and DEL."""
    try:
        now = socket.if_nametoindex(eni.device)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", eni.device.encode()))
    except OSError:  # gone
        return False
    mac = ":".join(f"{b:02x}" for b in raw[18:24])  # ifreq: name[16], sockaddr's family[2]
    return now == index and mac == eni.mac


def prepare_eni(node_netns: str | None, eni: EniLink) -> None:
    """Bring the ENI up with its table's default route; idempotent.

    Also: forwarding on (veth pods are routed), loose reverse-path filtering on the ENI
    (pods' traffic arrives on it while the route back to a pod points at its veth or at
    the node's ipvlan child), and proxy ARP answered at once (veth pods' IPs are answered
    for by neighbour proxy entries; the default 0.8 s delay would stall every first packet
    from the VPC router).
    """
    with netlink.opened(node_netns) as ns:
        index = netlink.require_link(ns, eni.device, node_netns or "this netns")
        ns.link("set", index=index, state="up")
        ns.route("replace", dst="0.0.0.0/0", gateway=str(eni.gateway), oif=index,
                 table=eni.table, flags=netlink.RTNH_F_ONLINK)
    netlink.sysctls(node_netns, {
        "net/ipv4/ip_forward": 1,
        f"net/ipv4/conf/{eni.device}/rp_filter": 2,
        f"net/ipv4/neigh/{eni.device}/proxy_delay": 0,
    })
