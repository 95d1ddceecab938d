"""Node (v1): registered by the lab's control plane, status and all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, NONE, Column, Obj, spec_of, status_of


def _status(node: Obj) -> str:
    ready = next((c for c in status_of(node).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else {"True": "Ready", "False": "NotReady"}.get(
        str(ready.get("status")), "Unknown")
    return state + (",SchedulingDisabled" if spec_of(node).get("unschedulable") else "")


def _roles(node: Obj) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    return ",".join(r for r in roles if r) or NONE


def _address(kind: str) -> Callable[[Obj], str]:
    def cell(node: Obj) -> str:
        found = [a.get("address") for a in status_of(node).get("addresses") or []
                 if a.get("type") == kind]
        return ",".join(str(a) for a in found) or NONE
    return cell


def _info(field: str) -> Callable[[Obj], str]:
    return lambda node: str((status_of(node).get("nodeInfo") or {}).get(field) or NONE)


class Nodes(Strategy):
    resource = Resource("nodes", "Node", "", "v1", False, ("no",), True)
    columns = (
        NAME, Column("Status", _status), Column("Roles", _roles), AGE,
        Column("Version", _info("kubeletVersion")),
        Column("Internal-IP", _address("InternalIP"), 1),
        Column("External-IP", _address("ExternalIP"), 1),
        Column("OS-Image", _info("osImage"), 1),
        Column("Kernel-Version", _info("kernelVersion"), 1),
        Column("Container-Runtime", _info("containerRuntimeVersion"), 1),
    )

    def initial_status(self, given: Any) -> Obj:
        """The one kind whose creator sets its status: a kubelet registers its node whole."""
        return given if isinstance(given, dict) else {}


STRATEGY = Nodes()
