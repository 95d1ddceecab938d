"""Server-side validation: what a real API server refuses with 422 Invalid, for the kinds served.

Clients (kubectl among them) rely on the server for validation once it advertises field
validation, so each error names its field path the way Kubernetes does:
`spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between ...`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.resources import RESOURCES
from podlab.kubeapi.selectors import selector_matches

PROTOCOLS = ("SCTP", "TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
Cause = dict[str, str]


def _show(value: Any) -> str:
    """A value as Go's `%v`/`%q` would print it in an error."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(value.items())) + "]"
    return str(value)


class Errors:
    """Collects causes; the helpers mirror apimachinery's field.Error constructors."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def required(self, path: str, detail: str = "") -> None:
        self.causes.append({"reason": "FieldValueRequired", "field": path,
                            "message": "Required value" + (f": {detail}" if detail else "")})

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.causes.append({"reason": "FieldValueInvalid", "field": path,
                            "message": f"Invalid value: {_show(value)}: {detail}"})

    def unsupported(self, path: str, value: Any, supported: tuple[str, ...]) -> None:
        choices = ", ".join(json.dumps(s) for s in supported)
        self.causes.append({"reason": "FieldValueNotSupported", "field": path,
                            "message": f"Unsupported value: {_show(value)}: "
                                       f"supported values: {choices}"})

    def duplicate(self, path: str, value: Any) -> None:
        self.causes.append({"reason": "FieldValueDuplicate", "field": path,
                            "message": f"Duplicate value: {_show(value)}"})

    def forbidden(self, path: str, detail: str) -> None:
        self.causes.append({"reason": "FieldValueForbidden", "field": path,
                            "message": f"Forbidden: {detail}"})

    def syntax(self, path: str, value: Any, check: Callable[[str], list[str]]) -> bool:
        if not isinstance(value, str):
            self.invalid(path, value, "must be a string")
            return False
        for why in check(value):
            self.invalid(path, value, why)
        return not check(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field; a stray non-object counts as an empty one."""
    return [_dict(v) for v in _list(value)]


def _port_number(errs: Errors, path: str, value: Any, *, required: bool = True,
                 low: int = 1) -> None:
    if value is None:
        if required:
            errs.required(path)
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errs.invalid(path, value, "must be an integer")
    elif not low <= value <= 65535:
        errs.invalid(path, value, f"must be between {low} and 65535, inclusive")


def _protocol(errs: Errors, path: str, value: Any) -> None:
    if value is not None and value not in PROTOCOLS:
        errs.unsupported(path, value, PROTOCOLS)


def _int_or_name(errs: Errors, path: str, value: Any) -> None:
    """A port given as a number or as a container port's IANA name (targetPort, netpol port)."""
    if isinstance(value, str) and not value.isdigit():
        for why in names.port_name(value):
            errs.invalid(path, value, why)
    elif isinstance(value, str):
        _port_number(errs, path, int(value))
    elif value is not None:
        _port_number(errs, path, value)


def validate_labels(errs: Errors, path: str, labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        errs.invalid(path, labels, "must be a map of strings")
        return
    for key, value in labels.items():
        errs.syntax(path, key, names.qualified_name)
        if not isinstance(value, str):
            errs.invalid(f"{path}[{key}]", value, "must be a string")
        else:
            errs.syntax(path, value, names.label_value)


def validate_label_selector(errs: Errors, path: str, selector: Any) -> None:
    sel = _dict(selector)
    validate_labels(errs, f"{path}.matchLabels", sel.get("matchLabels"))
    for i, expr in enumerate(_dicts(sel.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        errs.syntax(f"{p}.key", expr.get("key"), names.qualified_name)
        op, values = expr.get("operator"), _list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.required(f"{p}.values", "must be specified when `operator` is 'In' or "
                                            "'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(f"{p}.values", "may not be specified when `operator` is "
                                              "'Exists' or 'DoesNotExist'")
        else:
            errs.unsupported(f"{p}.operator", op, ("DoesNotExist", "Exists", "In", "NotIn"))
        for j, v in enumerate(values):
            errs.syntax(f"{p}.values[{j}]", v, names.label_value)


def validate_metadata(errs: Errors, resource: str, meta: dict[str, Any]) -> None:
    name_check = {"namespaces": names.dns1123_label,
                  "services": names.dns1035_label}.get(resource, names.dns1123_subdomain)
    name = meta.get("name")
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        errs.syntax("metadata.name", name, name_check)
    if RESOURCES[resource].namespaced:
        errs.syntax("metadata.namespace", meta.get("namespace", ""), names.dns1123_label)
    validate_labels(errs, "metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict):
            errs.invalid("metadata.annotations", annotations, "must be a map of strings")
        else:
            for key, value in annotations.items():
                errs.syntax("metadata.annotations", key, names.qualified_name)
                if not isinstance(value, str):
                    errs.invalid(f"metadata.annotations[{key}]", value, "must be a string")


def validate_container(errs: Errors, path: str, container: Any, seen: set[str]) -> None:
    c = _dict(container)
    name = c.get("name")
    if not name:
        errs.required(f"{path}.name")
    elif errs.syntax(f"{path}.name", name, names.dns1123_label):
        if name in seen:
            errs.duplicate(f"{path}.name", name)
        seen.add(name)
    if not c.get("image"):
        errs.required(f"{path}.image")
    port_names: set[str] = set()
    for i, port in enumerate(_dicts(c.get("ports"))):
        p = f"{path}.ports[{i}]"
        _port_number(errs, f"{p}.containerPort", port.get("containerPort"))
        _port_number(errs, f"{p}.hostPort", port.get("hostPort"), required=False, low=0)
        _protocol(errs, f"{p}.protocol", port.get("protocol"))
        if (pname := port.get("name")) and errs.syntax(f"{p}.name", pname, names.port_name):
            if pname in port_names:
                errs.duplicate(f"{p}.name", pname)
            port_names.add(pname)
    for i, env in enumerate(_list(c.get("env"))):
        if not _dict(env).get("name"):
            errs.required(f"{path}.env[{i}].name")


def validate_pod_spec(errs: Errors, path: str, spec: Any) -> None:
    spec = _dict(spec)
    containers = _list(spec.get("containers"))
    if not containers:
        errs.required(f"{path}.containers")
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec.get(key))):
            validate_container(errs, f"{path}.{key}[{i}]", container, seen)
    if node := spec.get("nodeName"):
        errs.syntax(f"{path}.nodeName", node, names.dns1123_subdomain)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "Never", "OnFailure"):
        errs.unsupported(f"{path}.restartPolicy", policy, ("Always", "Never", "OnFailure"))
    validate_labels(errs, f"{path}.nodeSelector", spec.get("nodeSelector"))


def _ip(errs: Errors, path: str, value: Any, family: int = 0) -> None:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        errs.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        return
    if family and addr.version != family:
        errs.invalid(path, value, f"must be an IPv{family} address")


def validate_service(errs: Errors, spec: dict[str, Any]) -> None:
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        errs.unsupported("spec.type", stype, SERVICE_TYPES)
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in (None, "", "None"):
        _ip(errs, "spec.clusterIP", cluster_ip)
    headless = cluster_ip == "None"
    ports = _list(spec.get("ports"))
    if not ports and stype != "ExternalName" and not headless:
        errs.required("spec.ports")
    port_names, pairs = set(), set()
    for i, port in enumerate(_dicts(ports)):
        p = f"spec.ports[{i}]"
        name = port.get("name")
        if not name and len(ports) > 1:
            errs.required(f"{p}.name")
        elif name and errs.syntax(f"{p}.name", name, names.dns1123_label):
            if name in port_names:
                errs.duplicate(f"{p}.name", name)
            port_names.add(name)
        _port_number(errs, f"{p}.port", port.get("port"))
        _protocol(errs, f"{p}.protocol", port.get("protocol"))
        _int_or_name(errs, f"{p}.targetPort", port.get("targetPort"))
        _port_number(errs, f"{p}.nodePort", port.get("nodePort"), required=False, low=0)
        pair = (port.get("port"), port.get("protocol", "TCP"))
        if pair in pairs:
            errs.duplicate(p, {"port": pair[0], "protocol": pair[1]})
        pairs.add(pair)
    selector = spec.get("selector")
    if selector is not None:
        validate_labels(errs, "spec.selector", selector)
    if stype == "ExternalName" and not spec.get("externalName"):
        errs.required("spec.externalName")


def validate_statefulset(errs: Errors, spec: dict[str, Any]) -> None:
    _validate_workload(errs, spec, "statefulset")
    pmp = spec.get("podManagementPolicy")
    if pmp is not None and pmp not in ("OrderedReady", "Parallel"):
        errs.unsupported("spec.podManagementPolicy", pmp, ("OrderedReady", "Parallel"))


def validate_deployment(errs: Errors, spec: dict[str, Any]) -> None:
    _validate_workload(errs, spec, "deployment")
    strategy = _dict(spec.get("strategy")).get("type")
    if strategy is not None and strategy not in ("RollingUpdate", "Recreate"):
        errs.unsupported("spec.strategy.type", strategy, ("Recreate", "RollingUpdate"))


def _validate_workload(errs: Errors, spec: dict[str, Any], kind: str) -> None:
    """What a StatefulSet and a Deployment share: replicas, a selector that matches the
    template's labels, and a pod template that restarts always."""
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        errs.invalid("spec.replicas", replicas, "must be greater than or equal to 0")
    selector = spec.get("selector")
    template = _dict(spec.get("template"))
    labels = _dict(template.get("metadata")).get("labels") or {}
    if not isinstance(selector, dict):
        errs.required("spec.selector")
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", selector, f"empty selector is invalid for {kind}")
    else:
        validate_label_selector(errs, "spec.selector", selector)
        if not errs.causes and not selector_matches(selector, labels):
            errs.invalid("spec.template.metadata.labels", labels,
                         "`selector` does not match template `labels`")
    validate_labels(errs, "spec.template.metadata.labels", labels)
    validate_pod_spec(errs, "spec.template.spec", template.get("spec"))
    policy = _dict(template.get("spec")).get("restartPolicy", "Always")
    if policy != "Always":
        errs.unsupported("spec.template.spec.restartPolicy", policy, ("Always",))


def _peer(errs: Errors, path: str, peer: Any) -> None:
    peer = _dict(peer)
    for key in ("podSelector", "namespaceSelector"):
        if key in peer:
            validate_label_selector(errs, f"{path}.{key}", peer[key])
    if block := _dict(peer.get("ipBlock")):
        try:
            net = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        except ValueError:
            errs.invalid(f"{path}.ipBlock.cidr", block.get("cidr"), "must be a valid CIDR")
            return
        for j, cidr in enumerate(_list(block.get("except"))):
            try:
                inner = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                errs.invalid(f"{path}.ipBlock.except[{j}]", cidr, "must be a valid CIDR")
                continue
            if inner.version != net.version or not inner.subnet_of(net):  # type: ignore[arg-type]
                errs.invalid(f"{path}.ipBlock.except[{j}]", cidr, "must be a strict subset of "
                                                                  "`cidr`")


def validate_network_policy(errs: Errors, spec: dict[str, Any]) -> None:
    validate_label_selector(errs, "spec.podSelector", spec.get("podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_dicts(spec.get(direction))):
            path = f"spec.{direction}[{i}]"
            for j, port in enumerate(_dicts(rule.get("ports"))):
                p = f"{path}.ports[{j}]"
                _protocol(errs, f"{p}.protocol", port.get("protocol"))
                _int_or_name(errs, f"{p}.port", port.get("port"))
                if (end := port.get("endPort")) is not None:
                    start = port.get("port")
                    if not isinstance(start, int):
                        errs.required(f"{p}.port", "when endPort is specified")
                    elif not isinstance(end, int) or end < start:
                        errs.invalid(f"{p}.endPort", end, "must be greater than or equal to "
                                                          "`port`")
            for j, peer in enumerate(_list(rule.get(peers))):
                _peer(errs, f"{path}.{peers}[{j}]", peer)
    for i, ptype in enumerate(_list(spec.get("policyTypes"))):
        if ptype not in ("Ingress", "Egress"):
            errs.unsupported(f"spec.policyTypes[{i}]", ptype, ("Egress", "Ingress"))


def validate_endpoint_slice(errs: Errors, obj: dict[str, Any]) -> None:
    family = {"IPv4": 4, "IPv6": 6}.get(str(obj.get("addressType")), 0)
    if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
        errs.unsupported("addressType", obj.get("addressType"), ("FQDN", "IPv4", "IPv6"))
    for i, ep in enumerate(_list(obj.get("endpoints"))):
        addresses = _list(_dict(ep).get("addresses"))
        if not addresses:
            errs.required(f"endpoints[{i}].addresses", "must contain at least 1 address")
        for j, addr in enumerate(addresses):
            if family:
                _ip(errs, f"endpoints[{i}].addresses[{j}]", addr, family)
    for i, port in enumerate(_dicts(obj.get("ports"))):
        _port_number(errs, f"ports[{i}].port", port.get("port"), required=False)
        _protocol(errs, f"ports[{i}].protocol", port.get("protocol"))


def validate_endpoints(errs: Errors, obj: dict[str, Any]) -> None:
    for i, subset in enumerate(_dicts(obj.get("subsets"))):
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_list(subset.get(key))):
                _ip(errs, f"subsets[{i}].{key}[{j}].ip", _dict(addr).get("ip"))
        for j, port in enumerate(_dicts(subset.get("ports"))):
            _port_number(errs, f"subsets[{i}].ports[{j}].port", port.get("port"))
            _protocol(errs, f"subsets[{i}].ports[{j}].protocol", port.get("protocol"))


# What each kind's validation reads: its spec, or (for endpoints) the whole object.
_OF_SPEC: dict[str, Callable[[Errors, dict[str, Any]], None]] = {
    "pods": lambda errs, spec: validate_pod_spec(errs, "spec", spec),
    "services": validate_service,
    "statefulsets": validate_statefulset,
    "deployments": validate_deployment,
    "networkpolicies": validate_network_policy,
}
_OF_OBJECT: dict[str, Callable[[Errors, dict[str, Any]], None]] = {
    "endpointslices": validate_endpoint_slice,
    "endpoints": validate_endpoints,
}


def causes_for(resource: str, obj: dict[str, Any]) -> list[Cause]:
    """Every validation error of `obj` (already defaulted), as Status causes."""
    errs = Errors()
    validate_metadata(errs, resource, _dict(obj.get("metadata")))
    if of_spec := _OF_SPEC.get(resource):
        of_spec(errs, _dict(obj.get("spec")))
    if of_object := _OF_OBJECT.get(resource):
        of_object(errs, obj)
    return errs.causes


def invalid(resource: str, name: str, causes: list[Cause]) -> ApiError:
    """The 422 a real server sends: `Pod "x" is invalid: field: message` (bracketed if many)."""
    r = RESOURCES[resource]
    lines = [f"{c['field']}: {c['message']}" for c in causes]
    detail = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    kind = f"{r.kind}.{r.group}" if r.group else r.kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {detail}', causes,
                    kind=r.kind, name=name, group=r.group)


def validate(resource: str, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid with every cause, or return if `obj` is acceptable."""
    if causes := causes_for(resource, obj):
        raise invalid(resource, str(_dict(obj.get("metadata")).get("name") or ""), causes)


_META_FIELDS = frozenset((
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields"))
_TOP_FIELDS = {
    "endpoints": ("subsets",),
    "endpointslices": ("addressType", "endpoints", "ports"),
    "networkpolicies": ("spec",),
}


def unknown_fields(resource: str, obj: dict[str, Any]) -> list[str]:
    """Fields a strict decoder would refuse: checked at the top level and in metadata only,
    where a typo (`spce:`, `metadata.label:`) would otherwise silently drop a whole part."""
    r = RESOURCES[resource]
    known = {"apiVersion", "kind", "metadata",
             *_TOP_FIELDS.get(resource, ("spec", "status") if r.has_status else ("spec",))}
    found = [k for k in obj if k not in known]
    found += [f"metadata.{k}" for k in _dict(obj.get("metadata")) if k not in _META_FIELDS]
    return found
