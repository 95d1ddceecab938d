"""Endpoints (v1): a Service's ready addresses, written by podlab.controllers."""

from __future__ import annotations

from podlab.kubeapi.defaults import default_protocols
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, NONE, Column, Obj, first_of
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    as_list,
    dicts,
    ip_address,
    port_number,
    protocol,
)


def _endpoints(ep: Obj) -> str:
    found = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []]
        for addr in subset.get("addresses") or []:
            found += [f"{addr.get('ip')}:{p}" for p in ports] if ports else [str(addr.get("ip"))]
    return first_of(found) if found else NONE


class Endpoints(Strategy):
    resource = Resource("endpoints", "Endpoints", "", "v1", True, ("ep",))
    columns = (NAME, Column("Endpoints", _endpoints), AGE)
    body_fields = ("subsets",)

    def default(self, obj: Obj) -> None:
        for subset in obj.get("subsets") or ():
            if isinstance(subset, dict):
                default_protocols(subset.get("ports"))

    def validate(self, errs: Errors, obj: Obj) -> None:
        for i, subset in enumerate(dicts(obj.get("subsets"))):
            for key in ("addresses", "notReadyAddresses"):
                for j, addr in enumerate(as_list(subset.get(key))):
                    ip_address(errs, f"subsets[{i}].{key}[{j}].ip", as_dict(addr).get("ip"))
            for j, port in enumerate(dicts(subset.get("ports"))):
                port_number(errs, f"subsets[{i}].ports[{j}].port", port.get("port"))
                protocol(errs, f"subsets[{i}].ports[{j}].protocol", port.get("protocol"))


STRATEGY = Endpoints()
