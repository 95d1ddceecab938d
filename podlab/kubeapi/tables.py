"""Server-side printing: `meta.k8s.io/v1 Table`s with the columns kubectl shows.

kubectl renders `get` output from whatever Table the server returns (it has no columns of
its own for server-printed kinds), so the columns here are what people see in the lab.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from podlab.kubeapi.selectors import format_selector

Obj = dict[str, Any]
NONE = "<none>"


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[Obj], Any]
    priority: int = 0  # 1: shown only with `-o wide`
    type: str = "string"
    format: str = ""
    description: str = ""

    def definition(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description or f"{self.name} of the object.",
                "priority": self.priority}


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration, which kubectl's AGE column uses."""
    s = int(seconds)
    if s < 0:
        return "<invalid>" if s < -1 else "0s"
    m, h, d = s // 60, s // 3600, s // 86400
    steps = [(s < 120, f"{s}s"), (m < 10, _two(m, "m", s % 60, "s")), (m < 180, f"{m}m"),
             (h < 8, _two(h, "h", m % 60, "m")), (h < 48, f"{h}h"),
             (h < 24 * 8, _two(d, "d", h % 24, "h")), (h < 24 * 365 * 2, f"{d}d"),
             (h < 24 * 365 * 8, _two(d // 365, "y", d % 365, "d"))]
    return next((text for done, text in steps if done), f"{d // 365}y")


def age(obj: Obj) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return NONE
    created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - created).total_seconds())


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _more(items: list[str], limit: int = 3) -> str:
    if len(items) <= limit:
        return ",".join(items)
    return ",".join(items[:limit]) + f" + {len(items) - limit} more..."


def _pod_ready(pod: Obj) -> str:
    statuses = _status(pod).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    return f"{ready}/{len(_spec(pod).get('containers') or [])}"


def _pod_status(pod: Obj) -> str:
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in reversed(status.get("containerStatuses") or []):
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason"):
            reason = terminated["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _restarts(pod: Obj) -> str:
    return str(sum(int(c.get("restartCount") or 0)
                   for c in _status(pod).get("containerStatuses") or []))


def _svc_ports(svc: Obj) -> str:
    out = []
    for p in _spec(svc).get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or NONE


def _svc_external(svc: Obj) -> str:
    spec = _spec(svc)
    kind, external = spec.get("type", "ClusterIP"), list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = (_status(svc).get("loadBalancer") or {}).get("ingress") or []
        found = [i.get("ip") or i.get("hostname") for i in ingress] + external
        return ",".join(str(f) for f in found if f) or "<pending>"
    return ",".join(external) or NONE


def _map(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or NONE


def _endpoints(ep: Obj) -> str:
    found = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []]
        for addr in subset.get("addresses") or []:
            found += [f"{addr.get('ip')}:{p}" for p in ports] if ports else [str(addr.get("ip"))]
    return _more(found) if found else NONE


def _slice_ports(es: Obj) -> str:
    ports = [str(p["port"]) for p in es.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or "<unset>"


def _slice_endpoints(es: Obj) -> str:
    found = [str(a) for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return _more(found) if found else "<unset>"


def _containers(template_spec: Obj, field: str) -> str:
    return ",".join(str(c.get(field, "")) for c in template_spec.get("containers") or [])


def _template_spec(obj: Obj) -> Obj:
    return (_spec(obj).get("template") or {}).get("spec") or {}


def _node_status(node: Obj) -> str:
    ready = next((c for c in _status(node).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else {"True": "Ready", "False": "NotReady"}.get(
        str(ready.get("status")), "Unknown")
    return state + (",SchedulingDisabled" if _spec(node).get("unschedulable") else "")


def _node_roles(node: Obj) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    return ",".join(r for r in roles if r) or NONE


def _node_address(kind: str) -> Callable[[Obj], str]:
    def cell(node: Obj) -> str:
        found = [a.get("address") for a in _status(node).get("addresses") or []
                 if a.get("type") == kind]
        return ",".join(str(a) for a in found) or NONE
    return cell


def _node_info(field: str) -> Callable[[Obj], str]:
    return lambda node: str((_status(node).get("nodeInfo") or {}).get(field) or NONE)


NAME = Column("Name", lambda o: (o.get("metadata") or {}).get("name", ""), format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", age, description="CreationTimestamp is a timestamp representing the "
             "server time when this object was created.")

COLUMNS: dict[str, list[Column]] = {
    "pods": [
        NAME,
        Column("Ready", _pod_ready, description="The aggregate readiness state of this "
               "pod for accepting traffic."),
        Column("Status", _pod_status, description="The aggregate status of the containers "
               "in this pod."),
        Column("Restarts", _restarts, description="The number of times the containers in "
               "this pod have been restarted."),
        AGE,
        Column("IP", lambda p: _status(p).get("podIP") or NONE, 1),
        Column("Node", lambda p: _spec(p).get("nodeName") or NONE, 1),
        Column("Nominated Node", lambda p: _status(p).get("nominatedNodeName") or NONE, 1),
        Column("Readiness Gates", lambda p: NONE, 1),
    ],
    "services": [
        NAME,
        Column("Type", lambda s: _spec(s).get("type", "ClusterIP")),
        Column("Cluster-IP", lambda s: _spec(s).get("clusterIP") or NONE),
        Column("External-IP", _svc_external),
        Column("Port(s)", _svc_ports),
        AGE,
        Column("Selector", lambda s: _map(_spec(s).get("selector")), 1),
    ],
    "endpoints": [NAME, Column("Endpoints", _endpoints), AGE],
    "endpointslices": [
        NAME, Column("AddressType", lambda e: e.get("addressType", "")),
        Column("Ports", _slice_ports), Column("Endpoints", _slice_endpoints), AGE],
    "statefulsets": [
        NAME,
        Column("Ready", lambda s: f"{_status(s).get('readyReplicas') or 0}/"
                                  f"{_spec(s).get('replicas', 1)}"),
        AGE,
        Column("Containers", lambda s: _containers(_template_spec(s), "name"), 1),
        Column("Images", lambda s: _containers(_template_spec(s), "image"), 1),
    ],
    "deployments": [
        NAME,
        Column("Ready", lambda d: f"{_status(d).get('readyReplicas') or 0}/"
                                  f"{_spec(d).get('replicas', 1)}"),
        Column("Up-to-date", lambda d: _status(d).get("updatedReplicas") or 0, type="integer"),
        Column("Available", lambda d: _status(d).get("availableReplicas") or 0,
               type="integer"),
        AGE,
        Column("Containers", lambda d: _containers(_template_spec(d), "name"), 1),
        Column("Images", lambda d: _containers(_template_spec(d), "image"), 1),
        Column("Selector", lambda d: format_selector(_spec(d).get("selector")), 1),
    ],
    "networkpolicies": [
        NAME, Column("Pod-Selector", lambda n: format_selector(_spec(n).get("podSelector"))),
        AGE],
    "namespaces": [NAME, Column("Status", lambda n: _status(n).get("phase", "")), AGE],
    "nodes": [
        NAME, Column("Status", _node_status), Column("Roles", _node_roles), AGE,
        Column("Version", _node_info("kubeletVersion")),
        Column("Internal-IP", _node_address("InternalIP"), 1),
        Column("External-IP", _node_address("ExternalIP"), 1),
        Column("OS-Image", _node_info("osImage"), 1),
        Column("Kernel-Version", _node_info("kernelVersion"), 1),
        Column("Container-Runtime", _node_info("containerRuntimeVersion"), 1),
    ],
}


def _row_object(obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def table(resource: str, objects: list[Obj], resource_version: str = "",
          include_object: str = "Metadata", columns: bool = True) -> Obj:
    """A Table of `objects`; includeObject is "Object", "Metadata" (the default) or "None".
    `columns=False` leaves out the definitions, as watch events after the first do."""
    cols = COLUMNS.get(resource, [NAME, AGE])
    rows = []
    for obj in objects:
        row: Obj = {"cells": [col.cell(obj) for col in cols]}
        if (embedded := _row_object(obj, include_object)) is not None:
            row["object"] = embedded
        rows.append(row)
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": resource_version}}
    if columns:
        out["columnDefinitions"] = [col.definition() for col in cols]
    out["rows"] = rows
    return out
