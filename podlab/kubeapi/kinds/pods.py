"""Pod (v1): what the scheduler binds and the node runtime runs."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from podlab.kubeapi.kinds.podspec import default_pod_spec, validate_pod_spec
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, NONE, Column, Obj, spec_of, status_of
from podlab.kubeapi.validation import Errors


def _ready(pod: Obj) -> str:
    statuses = status_of(pod).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    return f"{ready}/{len(spec_of(pod).get('containers') or [])}"


def _status(pod: Obj) -> str:
    status = status_of(pod)
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
                   for c in status_of(pod).get("containerStatuses") or []))


def _selectable(label: str) -> Callable[[Obj], str]:
    section, key = label.split(".")
    return lambda pod: str((pod.get(section) or {}).get(key) or "")


class Pods(Strategy):
    resource = Resource("pods", "Pod", "", "v1", True, ("po",), True, ("all",))
    columns = (
        NAME,
        Column("Ready", _ready, description="The aggregate readiness state of this pod for "
               "accepting traffic."),
        Column("Status", _status, description="The aggregate status of the containers in "
               "this pod."),
        Column("Restarts", _restarts, description="The number of times the containers in "
               "this pod have been restarted."),
        AGE,
        Column("IP", lambda p: status_of(p).get("podIP") or NONE, 1),
        Column("Node", lambda p: spec_of(p).get("nodeName") or NONE, 1),
        Column("Nominated Node", lambda p: status_of(p).get("nominatedNodeName") or NONE, 1),
        Column("Readiness Gates", lambda p: NONE, 1),
    )
    fields = MappingProxyType({label: _selectable(label) for label in (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "status.phase", "status.podIP", "status.nominatedNodeName")})

    def default(self, obj: Obj) -> None:
        if isinstance(obj.get("spec"), dict):
            default_pod_spec(obj["spec"])

    def initial_status(self, given: Any) -> Obj:
        return {"phase": "Pending"}

    def validate(self, errs: Errors, obj: Obj) -> None:
        validate_pod_spec(errs, "spec", obj.get("spec"))


STRATEGY = Pods()
