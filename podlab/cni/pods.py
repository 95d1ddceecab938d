"""The pod's network, built by the agent: a lease turned into interfaces by the node's
datapath, and the CNI result that describes them.

The netlink work happens here, in the warm agent, not in the CNI plugin: the plugin is
started once per pod and stays a thin client of the socket (cmd/podlab-cni).
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from podlab.cni.pool import Lease
from podlab.cni.store import EniStatus, IpState
from podlab.datapath import netlink, service_access
from podlab.datapath.eni import eni_device, eni_on_node, eni_table, prepare_eni, still_there
from podlab.datapath.exclusive_eni import eni_in_pod
from podlab.datapath.model import EniLink, NodeLink, PodInterfaces, PodNetwork
from podlab.datapath.registry import Datapath, datapath, select_datapath

if TYPE_CHECKING:
    from podlab.cni.services import NodeServices

def node_datapath(eni_mode: str, override: str | None) -> Datapath:
    """Exclusive-ENI mode has its own datapath; shared ENIs take the override or the best
    the kernel offers (ipvlan, else veth)."""
    return datapath("exclusive-eni") if eni_mode == "exclusive" else select_datapath(override)


class NodeEnis:
    """The node's shared ENI devices by MAC, each found (a dump of every link on the node)
    and prepared once rather than on every ADD. A use checks (two ioctls) that the
    device still carries that MAC and index: a detached and re-attached ENI is a new device.
    The price: a route someone deletes from an ENI's table is put back only when its
    device changes or the agent restarts, not by the next ADD; CHECK reports it."""

    def __init__(self) -> None:
        self._ready: dict[str, tuple[EniLink, int]] = {}  # by MAC: the link, its ifindex
        self._lock = threading.Lock()

    def prepared(self, mac: str, gateway: IPv4Address, cidr: IPv4Network) -> EniLink:
        return self._prepare(mac, gateway, cidr)[0]

    def _prepare(self, mac: str, gateway: IPv4Address, cidr: IPv4Network
                 ) -> tuple[EniLink, bool]:
        """The prepared ENI, and whether it was prepared now (its device is new to us)."""
        with self._lock:
            known = self._ready.get(mac.lower())
        if known is not None and still_there(*known):
            return known[0], False
        device, index = eni_device(None, mac)
        eni = EniLink(device, mac.lower(), gateway, cidr, eni_table(mac))
        prepare_eni(None, eni)
        with self._lock:
            self._ready[eni.mac] = (eni, index)
        return eni, True

    def restore(self, dp: Datapath, enis: list[dict[str, Any]]) -> list[str]:
        """After a reconcile: every ready shared ENI (as the pool's info lists them) that
        holds pods' addresses and whose device is new — attached again after the cloud
        detached it, or first seen by this agent — gets its table and what its datapath
        says the pods lost with the old device (`Datapath.restore`: veth's proxy entries).
        The pods' rules name the table, a function of the MAC, so they lead out through
        the new device again. ipvlan pods' interfaces die with their parent and are not
        rebuilt here. The ENIs restored."""
        restored: list[str] = []
        for row in enis:
            held = [IPv4Address(ip["address"]) for ip in row["ips"]
                    if ip["state"] == IpState.USED]
            if row["exclusive"] or row["status"] != EniStatus.READY or not held:
                continue
            eni, fresh = self._prepare(row["mac"], IPv4Address(row["gateway"]),
                                       IPv4Network(row["cidr"]))
            if not fresh:
                continue
            dp.restore(None, eni, held)
            restored.append(str(row["id"]))
        return restored


def pod_network(lease: Lease, netns: str, ifname: str, enis: NodeEnis) -> PodNetwork:
    gateway, cidr = IPv4Address(lease.gateway), IPv4Network(lease.cidr)
    if not lease.exclusive:
        eni = enis.prepared(lease.mac, gateway, cidr)
    elif _in_pod(netns, ifname, lease.mac):
        # The ENI lives in the pod (CHECK, DEL): it returns to the node under a name of
        # its own, since the one it had there is not remembered; it has no table.
        eni = EniLink("eni" + lease.mac.replace(":", "")[-12:], lease.mac, gateway, cidr, 0)
    else:
        eni = eni_on_node(None, lease.mac, gateway, cidr)
    return PodNetwork(netns=netns, ip=IPv4Address(lease.ip), eni=eni, ifname=ifname)


def _in_pod(netns: str, ifname: str, mac: str) -> bool:
    if not netlink.netns_path(netns).exists():
        return False
    with netlink.opened(netns) as ns:
        return eni_in_pod(ns, ifname, mac) is not None


def set_up(dp: Datapath, pod: PodNetwork, service_cidr: str,
           services: NodeServices | None = None) -> PodInterfaces:
    """The pod's interface with its way to Services: the eBPF programs on it, attached
    before the result is returned so the pod's first packet is handled; or, under
    kube-proxy, for a pod that bypasses the node, a veth into the node's netfilter."""
    done = dp.setup(None, pod)
    try:
        if services is not None:
            services.attach(pod.netns, pod.ifname, str(pod.ip))
        elif service_cidr and dp.node_link.bypasses_node:
            # ipvlan keeps its own node-to-pod route through the node's ipvlan port
            service_access.attach(pod, IPv4Network(service_cidr),
                                  host_route=dp.node_link is NodeLink.NONE)
    except BaseException:
        dp.teardown(None, pod)
        raise
    return done


def tear_down(dp: Datapath, pod: PodNetwork, services: NodeServices | None = None) -> None:
    if services is not None:
        services.detach(pod.netns, pod.ifname, str(pod.ip))
    dp.teardown(None, pod)
    if services is None and dp.node_link.bypasses_node:
        service_access.detach(pod)


def cni_result(version: str, done: PodInterfaces) -> dict[str, Any]:
    """The CNI spec's result for what the datapath built."""
    return {
        "cniVersion": version,
        "interfaces": [{"name": i.name, "mac": i.mac,
                        **({"sandbox": i.sandbox} if i.sandbox else {})}
                       for i in done.interfaces],
        "ips": [{"address": str(ip.address), "gateway": str(ip.gateway),
                 "interface": ip.interface} for ip in done.ips],
        "routes": [{"dst": str(r.dst), "gw": str(r.gw)} for r in done.routes],
        "dns": {},
    }
