"""The VPC's L3 fabric: one router namespace standing in for Alibaba's vSwitches and vRouter.

Every ENI is a veth pair whose far end sits in the router. Each vSwitch gateway address
lives on the router's loopback, and the router answers ARP for every address it has a
route to elsewhere (proxy ARP), so a node ARPs for its gateway and for its vSwitch
neighbours and always reaches the router, as on Alibaba's VPC. An address is reachable
only while the router has a /32 route for it towards the ENI that owns it: the cloud's
control plane (assign/unassign, attach/detach) drives these routes, so a mistake in the
control plane shows up as a packet that does not arrive.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from pyroute2 import IPRoute

from podlab.datapath import netlink
from podlab.fakecloud import VSwitch
from podlab.lab import netns
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.ownership import label
from podlab.lab.state import MgmtState

ROUTER_PORT_PREFIX = "eni"
MAIN_TABLE = 254  # where the cloud's routes go; the kernel's local table has the rest
MGMT_FABRIC_IF = "mgmt0"


class VpcFabric:
    """The router namespace and the ENI ports plugged into it; the kernel holds the truth."""

    def __init__(self, lab: str, netns_name: str, events: EventLog) -> None:
        self.lab = lab
        self.netns = netns_name
        self.events = events
        self._lock = threading.Lock()

    def create(self) -> None:
        netns.create(self.netns, self.lab)
        netns.sysctl(
            self.netns,
            **{
                "net.ipv4.ip_forward": 1,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
                "net.ipv4.conf.default.proxy_arp": 1,
            },
        )
        self.events.emit("fabric.create", netns=self.netns)

    def add_vswitch(self, vsw: VSwitch) -> None:
        with netlink.opened(self.netns) as ns:
            ns.addr("add", index=1, address=str(vsw.gateway), prefixlen=32)
        self.events.emit("fabric.vswitch", vswitch=vsw.id, cidr=str(vsw.cidr),
                         gateway=str(vsw.gateway))

    def add_service_address(self, ip: str) -> None:
        """An address the VPC's own services answer on (100.100.100.200 for metadata)."""
        with netlink.opened(self.netns) as ns:
            ns.addr("replace", index=1, address=ip, prefixlen=32)  # a resumed lab's is there
        self.events.emit("fabric.service_address", ip=ip)

    def connect_host(self, mgmt: MgmtState) -> None:
        """The management path: a veth from the root netns into the router, owned by the lab."""
        with IPRoute() as ipr:
            ipr.link("add", ifname=mgmt.host_if, kind="veth",
                     peer={"ifname": MGMT_FABRIC_IF, "net_ns_fd": self.netns})
            index = ipr.link_lookup(ifname=mgmt.host_if)[0]
            ipr.link("set", index=index, ifalias=label(self.lab), state="up")
            ipr.addr("add", index=index, address=mgmt.host_ip, prefixlen=mgmt.prefixlen)
        with netlink.opened(self.netns) as ns:
            index = ns.link_lookup(ifname=MGMT_FABRIC_IF)[0]
            ns.link("set", index=index, state="up")
            ns.addr("add", index=index, address=mgmt.fabric_ip, prefixlen=mgmt.prefixlen)
        self.events.emit("fabric.mgmt", host_if=mgmt.host_if, host_ip=mgmt.host_ip,
                         fabric_ip=mgmt.fabric_ip)

    def plug_eni(self, node_netns: str, eni_id: str, mac: str, ifname: str | None = None) -> str:
        """Hot-plug an ENI into a node: a device with the ENI's MAC appears there, down,
        as a freshly attached ENI does. Returns its name in the node (ethN)."""
        with self._lock:
            if self._port(eni_id) is not None:
                raise LabError(f"ENI {eni_id} is already plugged in")
            with netlink.opened(node_netns) as node:
                names = {link.get("ifname") for link in node.get_links()}
            ifname = ifname or next(f"eth{i}" for i in range(1000) if f"eth{i}" not in names)
            with netlink.opened(self.netns) as ns:
                taken = {link.get("ifname") for link in ns.get_links()}
                port = next(f"{ROUTER_PORT_PREFIX}{i}" for i in range(1, 100000)
                            if f"{ROUTER_PORT_PREFIX}{i}" not in taken)
                ns.link("add", ifname=port, kind="veth",
                        peer={"ifname": ifname, "net_ns_fd": node_netns, "address": mac})
                ns.link("set", index=ns.link_lookup(ifname=port)[0], state="up", ifalias=eni_id)
            # Proxy ARP replies are delayed by up to 0.8 s by default; a vSwitch answers at once.
            netns.sysctl(self.netns, **{f"net.ipv4.neigh.{port}.proxy_delay": 0})
        self.events.emit("fabric.plug_eni", eni=eni_id, mac=mac, node_netns=node_netns,
                         device=ifname, port=port)
        return ifname

    def unplug_eni(self, eni_id: str) -> None:
        """Detach: the device leaves the node (the veth pair goes) and its routes with it."""
        with self._lock, netlink.opened(self.netns) as ns:
            index = self._port_index(ns, eni_id)
            if index is None:
                raise LabError(f"ENI {eni_id} is not plugged in")
            ns.link("del", index=index)
        self.events.emit("fabric.unplug_eni", eni=eni_id)

    def route_ip(self, ip: str, eni_id: str) -> None:
        """Send traffic for `ip` to the ENI that owns it (idempotent: replaces an old route)."""
        with self._lock, netlink.opened(self.netns) as ns:
            index = self._port_index(ns, eni_id)
            if index is None:
                raise LabError(f"cannot route {ip}: ENI {eni_id} is not plugged in")
            ns.route("replace", dst=_host_prefix(ip), oif=index)
        self.events.emit("fabric.route", ip=ip, eni=eni_id)

    def unroute_ip(self, ip: str) -> None:
        with self._lock, netlink.opened(self.netns) as ns:
            if ns.get_routes(dst=_host_prefix(ip), dst_len=_host_len(ip)):
                ns.route("del", dst=_host_prefix(ip))
        self.events.emit("fabric.unroute", ip=ip)

    def routes(self) -> dict[str, str]:
        """The router's host routes: IP -> the ENI id it is sent to."""
        with netlink.opened(self.netns) as ns:
            ports = {link["index"]: link.get("ifalias") for link in ns.get_links()
                     if (link.get("ifname") or "").startswith(ROUTER_PORT_PREFIX)}
            out = {}
            for family in (2, 10):
                for r in ns.get_routes(family=family):
                    dst, oif = r.get("dst"), r.get("oif")
                    if (dst and oif in ports and r["dst_len"] in (32, 128)
                            and r["table"] == MAIN_TABLE):  # not the ports' own addresses
                        out[dst] = ports[oif]
        return out

    def ports(self) -> list[str]:
        """The ENIs plugged into the router: its ports' aliases."""
        with netlink.opened(self.netns) as ns:
            return [link.get("ifalias") for link in ns.get_links()
                    if (link.get("ifname") or "").startswith(ROUTER_PORT_PREFIX)
                    and link.get("ifalias")]

    def _port(self, eni_id: str) -> int | None:
        with netlink.opened(self.netns) as ns:
            return self._port_index(ns, eni_id)

    @staticmethod
    def _port_index(ns: Any, eni_id: str) -> int | None:
        for link in ns.get_links():
            if link.get("ifalias") == eni_id:
                return int(link["index"])
        return None


def _host_len(ip: str) -> int:
    return ipaddress.ip_address(ip).max_prefixlen


def _host_prefix(ip: str) -> str:
    return f"{ip}/{_host_len(ip)}"
