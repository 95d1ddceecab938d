"""Zone data from the control plane: list-and-watch (the agent's `ListWatch`, through the
official client) of Services, EndpointSlices and Pods, each Service read through the shared
translation (`podlab.datapath.endpoints`) into the ClusterZone. The same reader answers
which pod and namespace an address is, for autopath and the lookup log; the node-local
cache watches only its node's pods (`fieldSelector spec.nodeName=<node>`)."""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kubernetes import client

from podlab.cni.listwatch import ListWatch, Obj, object_key
from podlab.datapath.endpoints import ServiceEndpoints, service_endpoints, slice_owner
from podlab.dns.kubernetes import ClusterZone, PodRecord

DONE_PHASES = ("Succeeded", "Failed")


def pod_record(pod: Obj) -> PodRecord | None:
    """A pod DNS knows: one with addresses of its own (not hostNetwork, whose address is
    its node's) that has not finished."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in DONE_PHASES:
        return None
    ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip")) \
        or ((status["podIP"],) if status.get("podIP") else ())
    if not ips:
        return None
    meta = pod["metadata"]
    return PodRecord(meta.get("namespace", ""), meta["name"], ips, spec.get("hostname"),
                     spec.get("subdomain"))


class ZoneReader:
    """A ListWatch Reader keeping the objects by key and the zone in step with them."""

    def __init__(self, zone: ClusterZone | None = None) -> None:
        """`zone` None: pods only (the node-local cache's autopath)."""
        self.zone = zone
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Obj]] = defaultdict(dict)
        self._by_ip: dict[str, PodRecord] = {}

    def namespace_of(self, ip: str) -> str | None:
        pod = self._by_ip.get(ip)
        return pod.namespace if pod else None

    def pod_of(self, ip: str) -> str | None:
        pod = self._by_ip.get(ip)
        return f"{pod.namespace}/{pod.name}" if pod else None

    def listed(self, resource: str, objects: list[Obj], version: str) -> None:
        with self._lock:
            self._objects[resource] = {object_key(o): o for o in objects}
            self._update(resource)

    def changed(self, resource: str, kind: str, obj: Obj) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects[resource].pop(object_key(obj), None)
            else:
                self._objects[resource][object_key(obj)] = obj
            self._update(resource)

    def _update(self, resource: str) -> None:
        if resource == "pods":
            pods = [r for r in map(pod_record, self._objects["pods"].values()) if r]
            self._by_ip = {ip: p for p in pods for ip in p.ips}
            if self.zone is not None:
                self.zone.set_pods(pods)
        elif self.zone is not None:
            self.zone.set_services(self.services())

    def services(self) -> list[ServiceEndpoints]:
        slices: dict[str, list[Obj]] = defaultdict(list)
        for s in self._objects["endpointslices"].values():
            slices[slice_owner(s)].append(s)
        return [service_endpoints(svc, slices.get(key, []))
                for key, svc in self._objects["services"].items()]


def cluster_watch(api: client.ApiClient, reader: ZoneReader,
                  events: Callable[..., None]) -> ListWatch:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    return ListWatch(api, {"services": core.list_service_for_all_namespaces,
                           "endpointslices": discovery.list_endpoint_slice_for_all_namespaces,
                           "pods": core.list_pod_for_all_namespaces},
                     reader, events, failed="dns-watch-failed")


def node_pods_watch(api: client.ApiClient, node: str, reader: ZoneReader,
                    events: Callable[..., None]) -> ListWatch:
    list_pods: Any = functools.partial(client.CoreV1Api(api).list_pod_for_all_namespaces,
                                       field_selector=f"spec.nodeName={node}")
    return ListWatch(api, {"pods": list_pods}, reader, events, failed="dns-watch-failed")
