"""kube-proxy on every node, fed by the API: Services and their EndpointSlices turned into
`ServicePort`s and synced into each node's netns by `podlab.datapath.kubeproxy` (iptables
or nftables, per lab). One key for everything: any change re-syncs the whole set, which
is what kube-proxy's iptables mode does too (one restore per sync)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from podlab.controllers.controller import Controller
from podlab.controllers.endpoints import SERVICE_NAME_LABEL
from podlab.datapath.kubeproxy import Backend, KubeProxy, ServicePort
from podlab.kubeapi.store import Store

SYNC = "sync"


def service_ports(services: Sequence[dict[str, Any]],
                  slices: Sequence[dict[str, Any]]) -> list[ServicePort]:
    """What kube-proxy programs: each ClusterIP Service port with its ready endpoints."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        owner = (s["metadata"]["namespace"],
                 (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL, ""))
        by_service.setdefault(owner, []).append(s)
    out = []
    for svc in services:
        meta, spec = svc["metadata"], svc["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        mine = by_service.get((meta["namespace"], meta["name"]), [])
        for port in spec.get("ports", []):
            name, proto = port.get("name", ""), str(port.get("protocol", "TCP"))
            backends = tuple(
                Backend(addr, int(sp["port"]))
                for s in mine for sp in s.get("ports", [])
                if sp.get("name", "") == name and sp.get("port")
                for e in s.get("endpoints", []) if (e.get("conditions") or {}).get("ready")
                for addr in e.get("addresses", []))
            out.append(ServicePort(meta["namespace"], meta["name"], name, proto.lower(), ip,
                                   int(port["port"]), backends))
    return out


class ServiceProxy(Controller):
    name = "kube-proxy"

    def __init__(self, store: Store, mode: str, node_netns: Sequence[str]) -> None:
        super().__init__(store)
        self.proxies = [KubeProxy(mode, netns) for netns in node_netns]
        self.queue.add(SYNC)  # the nodes' base rules, before any Service exists

    def on_event(self, _kind: str, resource: str, _obj: dict[str, Any]) -> None:
        if resource in ("services", "endpointslices"):
            self.queue.add(SYNC)

    def sync(self, _key: Hashable) -> None:
        ports = service_ports(self.store.list("services")[0],
                              self.store.list("endpointslices")[0])
        for proxy in self.proxies:
            proxy.sync(ports)
