"""kube-proxy on every node, fed by the API: Services and their EndpointSlices turned into
`ServicePort`s and synced into each node's netns by `podlab.datapath.kubeproxy` (iptables
or nftables, per lab). One key for everything: any change re-syncs the whole set, which
is what kube-proxy's iptables mode does too (one restore per sync)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from podlab.controllers.controller import Controller
from podlab.datapath.endpoints import service_endpoints, slice_owner
from podlab.datapath.kubeproxy import Backend, KubeProxy, ServicePort
from podlab.kubeapi.store import Store

SYNC = "sync"


def service_ports(services: Sequence[dict[str, Any]],
                  slices: Sequence[dict[str, Any]]) -> list[ServicePort]:
    """What kube-proxy programs: each ClusterIP Service port with its ready IPv4
    endpoints, as the shared translation (`datapath.endpoints`) reads them."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in slices:
        by_service.setdefault(slice_owner(s), []).append(s)
    out: list[ServicePort] = []
    for svc in services:
        meta = svc["metadata"]
        found = service_endpoints(svc, by_service.get(f"{meta['namespace']}/{meta['name']}", []))
        if found.cluster_ip is None:
            continue
        out.extend(
            ServicePort(found.namespace, found.name, port.name, port.protocol.lower(),
                        found.cluster_ip, port.port,
                        tuple(Backend(t.address, t.port) for t in port.ready()))
            for port in found.ports)
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
