"""Validation helpers every kind shares: the causes of a 422 Invalid, and the checks of
metadata, labels, selectors, ports and addresses.

Clients (kubectl among them) rely on the server for validation once it advertises field
validation, so each error names its field path the way Kubernetes does:
`spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between ...`.
What each kind checks beyond this lives in its module under `podlab.kubeapi.kinds`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

from podlab.kubeapi import names
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.resources import Resource

PROTOCOLS = ("SCTP", "TCP", "UDP")
Cause = dict[str, str]
NameCheck = Callable[[str], list[str]]


def show(value: Any) -> str:
    """A value as Go's `%v`/`%q`/`%#v` would print it in an error."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    if isinstance(value, Sequence):
        return "[" + " ".join(show(v) for v in value) + "]"
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
                            "message": f"Invalid value: {show(value)}: {detail}"})

    def unsupported(self, path: str, value: Any, supported: tuple[str, ...]) -> None:
        choices = ", ".join(json.dumps(s) for s in supported)
        self.causes.append({"reason": "FieldValueNotSupported", "field": path,
                            "message": f"Unsupported value: {show(value)}: "
                                       f"supported values: {choices}"})

    def duplicate(self, path: str, value: Any) -> None:
        self.causes.append({"reason": "FieldValueDuplicate", "field": path,
                            "message": f"Duplicate value: {show(value)}"})

    def forbidden(self, path: str, detail: str) -> None:
        self.causes.append({"reason": "FieldValueForbidden", "field": path,
                            "message": f"Forbidden: {detail}"})

    def syntax(self, path: str, value: Any, check: NameCheck) -> bool:
        if not isinstance(value, str):
            self.invalid(path, value, "must be a string")
            return False
        for why in check(value):
            self.invalid(path, value, why)
        return not check(value)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field; a stray non-object counts as an empty one."""
    return [as_dict(v) for v in as_list(value)]


def is_int(value: Any) -> TypeGuard[int]:
    """An integer in JSON's sense (Python's bool is an int, JSON's true is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


INT32_MAX = 2**31 - 1


def non_negative_int32(errs: Errors, path: str, value: Any) -> None:
    """A count or a number of seconds that Go holds in an int32: upstream cannot even
    decode a larger one, and a controller must never be asked to make 10^18 of anything."""
    if value is None:
        return
    if not is_int(value):
        errs.invalid(path, value, "must be an integer")
    elif value < 0:
        errs.invalid(path, value, "must be greater than or equal to 0")
    elif value > INT32_MAX:
        errs.invalid(path, value, f"must be less than or equal to {INT32_MAX}")


def port_number(errs: Errors, path: str, value: Any, *, required: bool = True,
                low: int = 1) -> None:
    if value is None:
        if required:
            errs.required(path)
        return
    if not is_int(value):
        errs.invalid(path, value, "must be an integer")
    elif not low <= value <= 65535:
        errs.invalid(path, value, f"must be between {low} and 65535, inclusive")


def protocol(errs: Errors, path: str, value: Any,
             supported: tuple[str, ...] = PROTOCOLS) -> None:
    if value is not None and value not in supported:
        errs.unsupported(path, value, supported)


def int_or_port_name(errs: Errors, path: str, value: Any) -> None:
    """A port given as a number or as a container port's IANA name (targetPort)."""
    if isinstance(value, str) and not value.isdigit():
        for why in names.port_name(value):
            errs.invalid(path, value, why)
    elif isinstance(value, str):
        port_number(errs, path, int(value))
    elif value is not None:
        port_number(errs, path, value)


def ip_address(errs: Errors, path: str, value: Any, family: int = 0) -> None:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        errs.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        return
    if family and addr.version != family:
        errs.invalid(path, value, f"must be an IPv{family} address")


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
    """A metav1.LabelSelector, as apimachinery's ValidateLabelSelector checks it."""
    sel = as_dict(selector)
    validate_labels(errs, f"{path}.matchLabels", sel.get("matchLabels"))
    for i, expr in enumerate(dicts(sel.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), as_list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.required(f"{p}.values", "must be specified when `operator` is 'In' or "
                                            "'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(f"{p}.values", "may not be specified when `operator` is "
                                              "'Exists' or 'DoesNotExist'")
        else:
            errs.invalid(f"{p}.operator", op, "not a valid selector operator")
        errs.syntax(f"{p}.key", expr.get("key"), names.qualified_name)
        for j, v in enumerate(values):
            errs.syntax(f"{p}.values[{j}]", v, names.label_value)


def validate_metadata(errs: Errors, meta: dict[str, Any], name_check: NameCheck,
                      namespaced: bool) -> None:
    """ObjectMeta: the name by the kind's own syntax, namespace, labels, annotations."""
    name = meta.get("name")
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        errs.syntax("metadata.name", name, name_check)
    if namespaced:
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


def invalid(r: Resource, name: str, causes: list[Cause]) -> ApiError:
    """The 422 a real server sends: `Pod "x" is invalid: field: message` (bracketed if many)."""
    lines = [f"{c['field']}: {c['message']}" for c in causes]
    detail = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    return ApiError(422, "Invalid", f'{r.qualified_kind} "{name}" is invalid: {detail}', causes,
                    kind=r.kind, name=name, group=r.group)


def invalid_field(r: Resource, name: str, path: str, value: Any, detail: str) -> ApiError:
    """A 422 with the one cause `path: Invalid value: ...`."""
    errs = Errors()
    errs.invalid(path, value, detail)
    return invalid(r, name, errs.causes)


META_FIELDS = frozenset((
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields"))


def unknown_fields(obj: dict[str, Any], top_fields: tuple[str, ...]) -> list[str]:
    """Fields a strict decoder would refuse: checked at the top level and in metadata only,
    where a typo (`spce:`, `metadata.label:`) would otherwise silently drop a whole part."""
    known = {"apiVersion", "kind", "metadata", *top_fields}
    found = [k for k in obj if k not in known]
    found += [f"metadata.{k}" for k in as_dict(obj.get("metadata")) if k not in META_FIELDS]
    return found
