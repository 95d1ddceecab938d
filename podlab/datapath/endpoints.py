"""The one reading of a Service and its EndpointSlices (plain API dicts) as backends,
shared by kube-proxy (`controllers/service_proxy.py`), the eBPF maps
(`cni/servicewatch.py`) and cluster DNS (`podlab/dns`), so they cannot disagree on which
endpoint serves (they did, on an endpoint with no `ready` condition).

It follows kube-proxy's EndpointSlice reading: a missing `ready` means ready, a missing
`serving` means serving, a missing `terminating` means not terminating; a slice's port
matches a Service port by name and protocol, and its `port` is the target port of that
slice's endpoints (a named targetPort as the EndpointSlice controller resolved it per
pod); an address seen twice behind one port counts once, as ready if either is. FQDN
slices are nobody's backends. Imports nothing of cni, controllers or lab: any of them may use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ADDRESS_TYPES = ("IPv4", "IPv6")  # FQDN slices are ignored, as kube-proxy and CoreDNS do

Obj = dict[str, Any]
K = TypeVar("K")
E = TypeVar("E", "Endpoint", "Target")


@dataclass(frozen=True)
class TargetRef:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Endpoint:
    """One address of an EndpointSlice endpoint, with its conditions as upstream reads them."""

    address: str
    address_type: str  # "IPv4" | "IPv6"
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    hostname: str | None = None
    node_name: str | None = None
    target_ref: TargetRef | None = None


@dataclass(frozen=True)
class Target:
    """An endpoint behind one Service port, with the target port its slice resolved."""

    endpoint: Endpoint
    port: int

    @property
    def address(self) -> str:
        return self.endpoint.address

    @property
    def ready(self) -> bool:
        return self.endpoint.ready


@dataclass(frozen=True)
class PortEndpoints:
    """One Service port and every endpoint behind it, ready or not."""

    name: str
    protocol: str  # as the API spells it: "TCP" | "UDP" | "SCTP"
    port: int
    targets: tuple[Target, ...] = ()

    def ready(self, address_type: str = "IPv4") -> tuple[Target, ...]:
        """What a proxy balances over: the ready targets of one address family."""
        return tuple(t for t in self.targets
                     if t.ready and t.endpoint.address_type == address_type)


@dataclass(frozen=True)
class ServiceEndpoints:
    namespace: str
    name: str
    type: str  # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ips: tuple[str, ...]  # empty for a headless or ExternalName Service
    external_name: str | None
    ports: tuple[PortEndpoints, ...]
    endpoints: tuple[Endpoint, ...]  # every address of every slice, ports or not

    @property
    def cluster_ip(self) -> str | None:
        """The primary ClusterIP, None when headless (or ExternalName)."""
        return self.cluster_ips[0] if self.cluster_ips else None

    @property
    def headless(self) -> bool:
        return not self.cluster_ips and self.type != "ExternalName"

    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        """What DNS answers a headless Service with: its ready addresses, hostnames kept,
        even when the Service has no ports."""
        return tuple(e for e in self.endpoints if e.ready)


def slice_owner(endpoint_slice: Obj) -> str:
    """`namespace/service` of an EndpointSlice (its service-name label), the key its
    Service is known by (`namespace/name`)."""
    meta = endpoint_slice["metadata"]
    return f"{meta.get('namespace', '')}/{(meta.get('labels') or {}).get(SERVICE_NAME_LABEL, '')}"


def _endpoints(endpoint_slice: Obj) -> list[Endpoint]:
    out: list[Endpoint] = []
    for e in endpoint_slice.get("endpoints") or []:
        conditions = e.get("conditions") or {}
        ready = conditions.get("ready") is not False
        ref = e.get("targetRef")
        target = TargetRef(ref.get("kind", ""), ref.get("namespace", ""),
                           ref.get("name", "")) if ref else None
        out.extend(Endpoint(
            address, endpoint_slice.get("addressType", "IPv4"), ready,
            serving=conditions.get("serving", ready) is not False,
            terminating=conditions.get("terminating") is True,
            hostname=e.get("hostname"), node_name=e.get("nodeName"), target_ref=target)
            for address in e.get("addresses") or [])
    return out


def _keep(seen: dict[K, E], key: K, new: E) -> None:
    """The first of a duplicate unless a later one is ready and it is not (a pod moving
    between slices is in both for a moment)."""
    old = seen.get(key)
    if old is None or (new.ready and not old.ready):
        seen[key] = new


def service_endpoints(svc: Obj, slices: Iterable[Obj]) -> ServiceEndpoints:
    """A Service with its slices (the caller picks the Service's own, e.g. by
    `slice_owner`)."""
    meta, spec = svc["metadata"], svc.get("spec") or {}
    kept = [(s, _endpoints(s)) for s in slices
            if s.get("addressType", "IPv4") in ADDRESS_TYPES]
    ports = []
    for port in spec.get("ports") or []:
        name, protocol = port.get("name") or "", str(port.get("protocol") or "TCP")
        targets: dict[tuple[str, int], Target] = {}
        for s, endpoints in kept:
            for sp in s.get("ports") or []:
                if ((sp.get("name") or "") != name or sp.get("port") is None
                        or str(sp.get("protocol") or "TCP") != protocol):
                    continue
                for e in endpoints:
                    _keep(targets, (e.address, int(sp["port"])), Target(e, int(sp["port"])))
        ports.append(PortEndpoints(name, protocol, int(port["port"]), tuple(targets.values())))
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
    every: dict[str, Endpoint] = {}
    for _, endpoints in kept:
        for e in endpoints:
            _keep(every, e.address, e)
    return ServiceEndpoints(
        meta.get("namespace", ""), meta["name"], str(spec.get("type") or "ClusterIP"),
        tuple(ips), spec.get("externalName"), tuple(ports), tuple(every.values()))
