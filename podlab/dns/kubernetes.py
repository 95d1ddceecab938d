"""The cluster zone, answered per the Kubernetes DNS specification (kubernetes/dns
docs/specification.md) with CoreDNS's kubernetes plugin's choices (TTL 5, `pods verified`).

Its input is the shared reading of Services and EndpointSlices
(`podlab.datapath.endpoints.ServiceEndpoints`), never its own, and the pods it is told
about. Each update rebuilds an index of every name and swaps it in whole, so a query in
the server's thread never sees half of one."""

from __future__ import annotations

import ipaddress
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dnslib import (  # type: ignore[import-untyped]
    AAAA,
    CNAME,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    A,
)

from podlab.datapath.endpoints import Endpoint, ServiceEndpoints
from podlab.dns.handler import Next
from podlab.dns.message import Request, reply

TTL = 5  # CoreDNS's kubernetes plugin: every record, and the SOA's minimum
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")


@dataclass(frozen=True)
class PodRecord:
    namespace: str
    name: str
    ips: tuple[str, ...]
    hostname: str | None = None
    subdomain: str | None = None


def dashed(ip: str) -> str:
    """An address as one DNS label, as the spec writes pods: 10-0-0-1, fd00--1."""
    return ip.replace(".", "-").replace(":", "-")


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _address(name: str, ip: str) -> RR:
    if ipaddress.ip_address(ip).version == 4:
        return RR(name, QTYPE.A, rdata=A(ip), ttl=TTL)
    return RR(name, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL)


class _Index:
    """Every record of the zone by (name, type), and every name that exists (with the
    empty non-terminals above them), which tells NODATA from NXDOMAIN."""

    def __init__(self, apex: str) -> None:
        self.apex = apex
        self.records: dict[tuple[str, int], list[RR]] = defaultdict(list)
        self.names: set[str] = {apex}

    def add(self, rr: RR) -> None:
        self.records[(str(rr.rname).lower(), int(rr.rtype))].append(rr)
        self.exists(str(rr.rname).lower())

    def exists(self, name: str) -> None:
        """`name` (and the names above it) exist, with records or not."""
        while name.endswith("." + self.apex) and name not in self.names:
            self.names.add(name)
            name = name.split(".", 1)[1]


class ClusterZone:
    """A Handler authoritative for `zone` and for the reverse names of the addresses it
    knows; other names (and unknown reverse names) go on down the chain."""

    def __init__(self, zone: str = "cluster.local", dns_ips: Iterable[str] = ()) -> None:
        self.zone = zone.strip(".").lower() + "."
        self.dns_ips = tuple(dns_ips)  # what ns.dns.<zone> answers
        self._services: list[ServiceEndpoints] = []
        self._pods: list[PodRecord] = []
        self._index, self._ptr = self._build()

    def set_services(self, services: Iterable[ServiceEndpoints]) -> None:
        self._services = list(services)
        self._index, self._ptr = self._build()

    def set_pods(self, pods: Iterable[PodRecord]) -> None:
        self._pods = list(pods)
        self._index, self._ptr = self._build()

    def soa(self) -> RR:
        return RR(self.zone, QTYPE.SOA, ttl=TTL, rdata=SOA(
            f"ns.dns.{self.zone}", f"hostmaster.{self.zone}",
            (self._serial, 7200, 1800, 86400, TTL)))

    def _build(self) -> tuple[_Index, dict[str, list[RR]]]:
        self._serial = int(time.time())
        index, ptr = _Index(self.zone), defaultdict[str, list[RR]](list)
        index.add(RR(self.zone, QTYPE.NS, rdata=NS(f"ns.dns.{self.zone}"), ttl=TTL))
        for ip in self.dns_ips:
            index.add(_address(f"ns.dns.{self.zone}", ip))
        pods = {(p.namespace, p.name): p for p in self._pods}
        for svc in self._services:
            self._add_service(index, ptr, svc, pods)
        for pod in self._pods:
            for ip in pod.ips:
                name = f"{dashed(ip)}.{pod.namespace}.pod.{self.zone}"
                index.add(_address(name, ip))
                ptr.setdefault(reverse_name(ip), [RR(reverse_name(ip), QTYPE.PTR,
                                                     rdata=PTR(name), ttl=TTL)])
        return index, dict(ptr)

    def _add_service(self, index: _Index, ptr: dict[str, list[RR]], svc: ServiceEndpoints,
                     pods: dict[tuple[str, str], PodRecord]) -> None:
        base = f"{svc.name}.{svc.namespace}.svc.{self.zone}"
        if svc.type == "ExternalName":
            if svc.external_name:
                index.add(RR(base, QTYPE.CNAME, rdata=CNAME(svc.external_name), ttl=TTL))
            return
        if not svc.headless:
            for ip in svc.cluster_ips:
                index.add(_address(base, ip))
                ptr[reverse_name(ip)] = [RR(reverse_name(ip), QTYPE.PTR, rdata=PTR(base), ttl=TTL)]
            for port in svc.ports:
                if port.name:
                    index.add(RR(f"_{port.name}._{port.protocol.lower()}.{base}", QTYPE.SRV,
                                 rdata=SRV(0, 100, port.port, base), ttl=TTL))
            return
        index.exists(base)  # a headless Service with no ready endpoint is NODATA
        names: dict[str, str] = {}
        for e in svc.ready_endpoints():
            names[e.address] = f"{self._endpoint_label(svc, e, pods)}.{base}"
            index.add(_address(base, e.address))
            index.add(_address(names[e.address], e.address))
            ptr[reverse_name(e.address)] = [RR(reverse_name(e.address), QTYPE.PTR,
                                               rdata=PTR(names[e.address]), ttl=TTL)]
        for port in svc.ports:
            if port.name:
                for t in port.targets:
                    if t.address in names:
                        index.add(RR(f"_{port.name}._{port.protocol.lower()}.{base}",
                                     QTYPE.SRV, rdata=SRV(0, 100, t.port, names[t.address]),
                                     ttl=TTL))

    @staticmethod
    def _endpoint_label(svc: ServiceEndpoints, e: Endpoint,
                        pods: dict[tuple[str, str], PodRecord]) -> str:
        """The endpoint's hostname; else its pod's, when the pod names this Service as its
        subdomain (what the EndpointSlice controller copies upstream); else its address."""
        if e.hostname:
            return e.hostname
        ref = e.target_ref
        pod = pods.get((ref.namespace or svc.namespace, ref.name)) if ref and ref.kind == "Pod" \
            else None
        if pod and pod.hostname and pod.subdomain == svc.name:
            return pod.hostname
        return dashed(e.address)

    async def serve(self, req: Request, next: Next) -> Any:
        name, qtype = req.qname, req.qtype
        if name.endswith(REVERSE_ZONES):
            ptrs = self._ptr.get(name)
            if ptrs is None:
                return await next(req)
            return self._answer(req, ptrs if qtype in (QTYPE.PTR, QTYPE.ANY) else [])
        if name != self.zone and not name.endswith("." + self.zone):
            return await next(req)
        index = self._index
        if qtype == QTYPE.SOA and name == self.zone:
            return self._answer(req, [self.soa()])
        found = index.records.get((name, qtype)) or index.records.get((name, QTYPE.CNAME))
        if found:
            msg = self._answer(req, found)
            for rr in found:
                if rr.rtype == QTYPE.SRV:
                    target = str(rr.rdata.target).lower()
                    for t in (QTYPE.A, QTYPE.AAAA):
                        msg.add_ar(*index.records.get((target, t), []))
            return msg
        msg = reply(req, RCODE.NOERROR if name in index.names else RCODE.NXDOMAIN, aa=True)
        msg.add_auth(self.soa())
        return msg

    @staticmethod
    def _answer(req: Request, records: list[RR]) -> Any:
        msg = reply(req, aa=True)
        msg.add_answer(*records)
        return msg
