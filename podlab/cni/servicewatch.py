"""Services and EndpointSlices of every namespace through the Kubernetes API (official
client), turned into the eBPF service maps' `Service`s: what kube-proxy reads, read by the
agent of each node, since in eBPF mode it is the node's kube-proxy.

Each resource has its own list-and-watch thread (`listwatch`). Once both have listed, a
(re)list is one full sync and every watch event one update of the Service it touches, so
an event costs that Service's ports, not all Services.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client

from podlab.cni.kubeclient import api_client
from podlab.cni.listwatch import ListWatch, Obj, object_key
from podlab.datapath.bpf import Backend, Service, ServicePort
from podlab.datapath.endpoints import service_endpoints, slice_owner

DEFAULT_AFFINITY_TIMEOUT = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds' default


class ServiceWriter(Protocol):
    """Where the Services go (NodeServices): all at once, or one ClusterIP's."""

    def sync(self, services: list[Service]) -> None: ...

    def update(self, cluster_ip: str, service: Service | None) -> None: ...


def lb_service(svc: Obj, slices: Iterable[Obj]) -> Service | None:
    """A Service's ClusterIP TCP and UDP ports (SCTP: not handled by the programs) with
    their ready IPv4 endpoints, as the shared translation (`datapath.endpoints`) reads
    them. None for a headless Service."""
    found = service_endpoints(svc, slices)
    if found.cluster_ip is None:
        return None
    ports = tuple(
        ServicePort(port.port, port.protocol.lower(),
                    tuple(Backend(t.address, t.port) for t in port.ready()), port.name)
        for port in found.ports if port.protocol in ("TCP", "UDP"))
    spec = svc.get("spec") or {}
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    return Service(found.cluster_ip, ports, affinity, found.namespace, found.name)


class ServiceWatch:
    def __init__(self, url: str, writer: ServiceWriter, events: Callable[..., None],
                 *, token: str = "", ca_file: Path | None = None,
                 local: Iterable[Service] = ()) -> None:
        """`local`: the node's own frontends (the node-local DNS address), written with
        every full sync beside the API's, whose ClusterIPs never take their addresses."""
        api = api_client(url, token, ca_file)
        lists: dict[str, Callable[..., Any]] = {
            "services": client.CoreV1Api(api).list_service_for_all_namespaces,
            "endpointslices": client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
        }
        self._watch = ListWatch(api, lists, self, events, failed="service_watch_failed")
        self._resources = len(lists)
        self.writer, self.events, self.local = writer, events, tuple(local)
        self._services: dict[str, Obj] = {}  # ns/name -> Service
        self._slices: dict[str, dict[str, Obj]] = {}  # ns/service -> slice ns/name -> slice
        self._ips: dict[str, str] = {}  # ns/name -> the ClusterIP written for it
        self._listed: set[str] = set()
        self._lock = threading.Lock()  # the state above and the writes that follow it
        self.synced = threading.Event()  # the first full sync is written

    def start(self) -> ServiceWatch:
        self._watch.start()
        return self

    def stop(self) -> None:
        self._watch.stop()

    def listed(self, resource: str, objects: list[Obj], version: str) -> None:
        with self._lock:
            if resource == "services":
                self._services = {object_key(o): o for o in objects}
            else:
                self._slices = {}
                for o in objects:
                    self._slices.setdefault(slice_owner(o), {})[object_key(o)] = o
            self._listed.add(resource)
            if len(self._listed) == self._resources:
                self._sync_all()

    def changed(self, resource: str, kind: str, obj: Obj) -> None:
        with self._lock:
            if resource == "services":
                service = object_key(obj)
                if kind == "DELETED":
                    self._services.pop(service, None)
                else:
                    self._services[service] = obj
            else:
                service = slice_owner(obj)
                mine = self._slices.setdefault(service, {})
                if kind == "DELETED":
                    mine.pop(object_key(obj), None)
                else:
                    mine[object_key(obj)] = obj
            if len(self._listed) == self._resources:
                self._update(service)

    def _wanted(self, service: str) -> Service | None:
        svc = self._services.get(service)
        return lb_service(svc, self._slices.get(service, {}).values()) if svc else None

    def _sync_all(self) -> None:
        wanted = {key: s for key in self._services if (s := self._wanted(key)) is not None}
        self.writer.sync([*self.local, *wanted.values()])
        self._ips = {key: s.cluster_ip for key, s in wanted.items()}
        self.events("services_synced", services=len(wanted))
        self.synced.set()

    def _update(self, service: str) -> None:
        wanted = self._wanted(service)
        ip = wanted.cluster_ip if wanted else self._ips.pop(service, None)
        if ip is None:
            return
        self.writer.update(ip, wanted)
        if wanted:
            self._ips[service] = ip
