"""Deployment (apps/v1): replicated pods rolled out by template, run by podlab.controllers."""

from __future__ import annotations

from typing import Any

from podlab.kubeapi.kinds.workloads import (
    CONTAINERS,
    IMAGES,
    READY,
    default_workload,
    validate_workload,
)
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.selectors import format_selector
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, Column, spec_of, status_of
from podlab.kubeapi.validation import Errors, as_dict, non_negative_int32

STRATEGY_TYPES = ("Recreate", "RollingUpdate")


class Deployments(Strategy):
    resource = Resource("deployments", "Deployment", "apps", "v1", True, ("deploy",), True,
                        ("all",))
    columns = (
        NAME, READY,
        Column("Up-to-date", lambda d: status_of(d).get("updatedReplicas") or 0,
               type="integer"),
        Column("Available", lambda d: status_of(d).get("availableReplicas") or 0,
               type="integer"),
        AGE, CONTAINERS, IMAGES,
        Column("Selector", lambda d: format_selector(spec_of(d).get("selector")), 1),
    )

    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": "25%", "maxUnavailable": "25%"}})
            default_workload(spec)

    def initial_status(self, given: Any) -> dict[str, Any]:
        return {}

    def validate(self, errs: Errors, obj: dict[str, Any]) -> None:
        spec = as_dict(obj.get("spec"))
        validate_workload(errs, spec, "deployment")
        non_negative_int32(errs, "spec.progressDeadlineSeconds",
                           spec.get("progressDeadlineSeconds"))
        strategy = as_dict(spec.get("strategy")).get("type")
        if strategy is not None and strategy not in STRATEGY_TYPES:
            errs.unsupported("spec.strategy.type", strategy, STRATEGY_TYPES)


STRATEGY = Deployments()
