"""Service (v1): a cluster IP from the service CIDR, kept for the Service's life."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Allocators, Strategy
from podlab.kubeapi.tables import AGE, NAME, NONE, Column, Obj, label_map, spec_of, status_of
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    as_list,
    dicts,
    int_or_port_name,
    invalid_field,
    ip_address,
    port_number,
    protocol,
    validate_labels,
)

TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _ports(svc: Obj) -> str:
    out = []
    for p in spec_of(svc).get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or NONE


def _external(svc: Obj) -> str:
    spec = spec_of(svc)
    kind, external = spec.get("type", "ClusterIP"), list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = (status_of(svc).get("loadBalancer") or {}).get("ingress") or []
        found = [i.get("ip") or i.get("hostname") for i in ingress] + external
        return ",".join(str(f) for f in found if f) or "<pending>"
    return ",".join(external) or NONE


def _validate_ports(errs: Errors, ports: list[Any]) -> None:
    port_names, pairs = set(), set()
    for i, port in enumerate(dicts(ports)):
        p = f"spec.ports[{i}]"
        name = port.get("name")
        if not name and len(ports) > 1:
            errs.required(f"{p}.name")
        elif name and errs.syntax(f"{p}.name", name, names.dns1123_label):
            if name in port_names:
                errs.duplicate(f"{p}.name", name)
            port_names.add(name)
        port_number(errs, f"{p}.port", port.get("port"))
        protocol(errs, f"{p}.protocol", port.get("protocol"))
        int_or_port_name(errs, f"{p}.targetPort", port.get("targetPort"))
        port_number(errs, f"{p}.nodePort", port.get("nodePort"), required=False, low=0)
        pair = (port.get("port"), port.get("protocol", "TCP"))
        if pair in pairs:
            errs.duplicate(p, {"port": pair[0], "protocol": pair[1]})
        pairs.add(pair)


class Services(Strategy):
    resource = Resource("services", "Service", "", "v1", True, ("svc",), True, ("all",))
    columns = (
        NAME,
        Column("Type", lambda s: spec_of(s).get("type", "ClusterIP")),
        Column("Cluster-IP", lambda s: spec_of(s).get("clusterIP") or NONE),
        Column("External-IP", _external),
        Column("Port(s)", _ports),
        AGE,
        Column("Selector", lambda s: label_map(spec_of(s).get("selector")), 1),
    )
    merge_keys = MappingProxyType({("spec", "ports"): "port"})

    def check_name(self, name: str) -> list[str]:
        return names.dns1035_label(name)  # a Service's name is a DNS label that starts a-z

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        if spec["type"] != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")

    def initial_status(self, given: Any) -> Obj:
        return {"loadBalancer": {}}

    def validate(self, errs: Errors, obj: Obj) -> None:
        spec = as_dict(obj.get("spec"))
        stype = spec.get("type", "ClusterIP")
        if stype not in TYPES:
            errs.unsupported("spec.type", stype, TYPES)
        cluster_ip = spec.get("clusterIP")
        if cluster_ip not in (None, "", "None"):
            ip_address(errs, "spec.clusterIP", cluster_ip)
        ports = as_list(spec.get("ports"))
        if not ports and stype != "ExternalName" and cluster_ip != "None":
            errs.required("spec.ports")
        _validate_ports(errs, ports)
        if spec.get("selector") is not None:
            validate_labels(errs, "spec.selector", spec["selector"])
        if stype == "ExternalName" and not spec.get("externalName"):
            errs.required("spec.externalName")

    def on_create(self, obj: Obj, allocators: Allocators) -> None:
        """A requested cluster IP is reserved, none is allocated; headless and ExternalName
        Services take none."""
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        wanted = spec.get("clusterIP") or ""
        if wanted == "None":
            spec["clusterIPs"] = ["None"]
            return
        name = obj["metadata"]["name"]
        if wanted:
            if why := allocators.cluster_ips.reserve(wanted):
                raise invalid_field(self.resource, name, "spec.clusterIPs", [wanted], why)
        else:
            wanted = allocators.cluster_ips.allocate() or ""
            if not wanted:
                raise ApiError(500, "InternalError", "Internal error occurred: failed to "
                               "allocate a serviceIP: range is full")
        spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]

    def prepare_update(self, old: Obj, new: Obj) -> None:
        """clusterIP is immutable; an update that leaves it out keeps it, as since 1.20."""
        was, spec = old.get("spec") or {}, new.setdefault("spec", {})
        for field in ("clusterIP", "clusterIPs"):
            if field not in was:
                continue
            if spec.get(field) in (None, "", []):
                spec[field] = copy.deepcopy(was[field])
            elif spec[field] != was[field]:
                raise invalid_field(self.resource, new["metadata"]["name"], f"spec.{field}",
                                    spec[field], "field is immutable")

    def on_delete(self, obj: Obj, allocators: Allocators) -> None:
        for ip in _cluster_ips(obj):
            allocators.cluster_ips.release(ip)

    def on_restore(self, obj: Obj, allocators: Allocators) -> None:
        for ip in _cluster_ips(obj):
            allocators.cluster_ips.reserve(ip)


def _cluster_ips(svc: Obj) -> list[str]:
    """The cluster IPs a Service holds from the allocator (a headless one holds none)."""
    return [ip for ip in (svc.get("spec") or {}).get("clusterIPs") or () if ip != "None"]


STRATEGY = Services()
