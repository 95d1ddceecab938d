"""EndpointSlice (discovery.k8s.io/v1): what kube-proxy reads, one per Service here."""

from __future__ import annotations

from podlab.kubeapi.defaults import default_protocols
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, Column, Obj, first_of
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    as_list,
    dicts,
    ip_address,
    port_number,
    protocol,
)

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def _ports(es: Obj) -> str:
    ports = [str(p["port"]) for p in es.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or "<unset>"


def _endpoints(es: Obj) -> str:
    found = [str(a) for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return first_of(found) if found else "<unset>"


class EndpointSlices(Strategy):
    resource = Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True)
    columns = (NAME, Column("AddressType", lambda e: e.get("addressType", "")),
               Column("Ports", _ports), Column("Endpoints", _endpoints), AGE)
    body_fields = ("addressType", "endpoints", "ports")

    def default(self, obj: Obj) -> None:
        default_protocols(obj.get("ports"))

    def validate(self, errs: Errors, obj: Obj) -> None:
        family = {"IPv4": 4, "IPv6": 6}.get(str(obj.get("addressType")), 0)
        if obj.get("addressType") not in ADDRESS_TYPES:
            errs.unsupported("addressType", obj.get("addressType"), ADDRESS_TYPES)
        for i, ep in enumerate(as_list(obj.get("endpoints"))):
            addresses = as_list(as_dict(ep).get("addresses"))
            if not addresses:
                errs.required(f"endpoints[{i}].addresses", "must contain at least 1 address")
            for j, addr in enumerate(addresses):
                if family:
                    ip_address(errs, f"endpoints[{i}].addresses[{j}]", addr, family)
        for i, port in enumerate(dicts(obj.get("ports"))):
            port_number(errs, f"ports[{i}].port", port.get("port"), required=False)
            protocol(errs, f"ports[{i}].protocol", port.get("protocol"))


STRATEGY = EndpointSlices()
