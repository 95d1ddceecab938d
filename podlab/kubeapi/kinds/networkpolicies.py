"""NetworkPolicy (networking.k8s.io/v1), defaulted and validated as the upstream API
server does it (SetDefaults_NetworkPolicy, ValidateNetworkPolicy), so a policy the lab
accepts is one a cluster accepts, and a bad one is refused with the same field paths.
The lab stores and watches policies; enforcing them is the datapath's business."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.defaults import default_protocols
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.selectors import format_selector
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, Column, Obj, spec_of
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    as_list,
    dicts,
    is_int,
    port_number,
    protocol,
    validate_label_selector,
)

PROTOCOLS = ("TCP", "UDP", "SCTP")  # in the order upstream's message lists them
POLICY_TYPES = ("Ingress", "Egress")
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/[0-9]{1,3}")
_NOT_A_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _cidr(text: Any) -> Network | None:
    """`text` read as Go's net.ParseCIDR reads it (address, '/', prefix length; host bits
    may be set), or None. Python alone would also take a bare address or a netmask."""
    if not isinstance(text, str) or not _CIDR.fullmatch(text):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _validate_port(errs: Errors, path: str, port: Obj) -> None:
    """A port is a number (with an optional endPort, for a range) or a named port."""
    protocol(errs, f"{path}.protocol", port.get("protocol"), PROTOCOLS)
    number, end, end_path = port.get("port"), port.get("endPort"), f"{path}.endPort"
    if end is not None and not is_int(end):
        errs.invalid(end_path, end, "must be an integer")
        end = None
    if number is None:
        if end is not None:
            errs.invalid(end_path, end, "may not be specified when `port` is not specified")
    elif is_int(number):
        port_number(errs, f"{path}.port", number)
        if end is not None:
            if end < number:
                errs.invalid(end_path, end, "must be greater than or equal to `port`")
            port_number(errs, end_path, end)
    elif isinstance(number, str):
        if end is not None:
            errs.invalid(end_path, end, "may not be specified when `port` is non-numeric")
        for why in names.port_name(number):
            errs.invalid(f"{path}.port", number, why)
    else:
        errs.invalid(f"{path}.port", number, "must be a port number or an IANA_SVC_NAME")


def _validate_ip_block(errs: Errors, path: str, block: Obj) -> None:
    """A valid CIDR, and exceptions each strictly inside it."""
    cidr = block.get("cidr")
    if not cidr:
        errs.required(f"{path}.cidr")
        return
    network = _cidr(cidr)
    if network is None:
        errs.invalid(f"{path}.cidr", cidr, _NOT_A_CIDR)
        return
    for i, text in enumerate(as_list(block.get("except"))):
        inner = _cidr(text)
        if inner is None:
            errs.invalid(f"{path}.except[{i}]", text, _NOT_A_CIDR)
        elif inner.network_address not in network or inner.prefixlen <= network.prefixlen:
            errs.invalid(f"{path}.except[{i}]", text, "must be a strict subset of `cidr`")


def _validate_peer(errs: Errors, path: str, peer: Obj) -> None:
    """A peer is pods and/or namespaces by selector, or an IP block alone."""
    given = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            given += 1
            validate_label_selector(errs, f"{path}.{key}", peer[key])
    if peer.get("ipBlock") is not None:
        given += 1
        _validate_ip_block(errs, f"{path}.ipBlock", as_dict(peer["ipBlock"]))
        if given > 1:
            errs.forbidden(path, "may not specify both ipBlock and another peer")
    if not given:
        errs.required(path, "must specify a peer")


class NetworkPolicies(Strategy):
    resource = Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True,
                        ("netpol",))
    columns = (NAME, Column("Pod-Selector",
                            lambda n: format_selector(spec_of(n).get("podSelector")),
                            description="The pods this policy applies to, by label."), AGE)

    def default(self, obj: Obj) -> None:
        """An empty podSelector (every pod); policy types Ingress, and Egress too when there
        are egress rules; TCP for every port without a protocol."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if spec.get("podSelector") is None:
            spec["podSelector"] = {}
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        for direction in ("ingress", "egress"):
            for rule in as_list(spec.get(direction)):
                if isinstance(rule, dict):
                    default_protocols(rule.get("ports"))

    def validate(self, errs: Errors, obj: Obj) -> None:
        spec = as_dict(obj.get("spec"))
        validate_label_selector(errs, "spec.podSelector", spec.get("podSelector"))
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(dicts(spec.get(direction))):
                path = f"spec.{direction}[{i}]"
                for j, port in enumerate(dicts(rule.get("ports"))):
                    _validate_port(errs, f"{path}.ports[{j}]", port)
                for j, peer in enumerate(dicts(rule.get(peers))):
                    _validate_peer(errs, f"{path}.{peers}[{j}]", peer)
        types = as_list(spec.get("policyTypes"))
        if len(types) > len(POLICY_TYPES):
            errs.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")
            return
        for i, ptype in enumerate(types):
            if ptype not in POLICY_TYPES:
                errs.unsupported(f"spec.policyTypes[{i}]", ptype, POLICY_TYPES)


STRATEGY = NetworkPolicies()
