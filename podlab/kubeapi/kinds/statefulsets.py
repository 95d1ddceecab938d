"""StatefulSet (apps/v1): ordered pods with stable names, run by podlab.controllers."""

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
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME
from podlab.kubeapi.validation import Errors, as_dict, non_negative_int32

POD_MANAGEMENT = ("OrderedReady", "Parallel")


class StatefulSets(Strategy):
    resource = Resource("statefulsets", "StatefulSet", "apps", "v1", True, ("sts",), True,
                        ("all",))
    columns = (NAME, READY, AGE, CONTAINERS, IMAGES)

    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"partition": 0}})
            default_workload(spec)

    def initial_status(self, given: Any) -> dict[str, Any]:
        return {"replicas": 0, "availableReplicas": 0}

    def validate(self, errs: Errors, obj: dict[str, Any]) -> None:
        spec = as_dict(obj.get("spec"))
        validate_workload(errs, spec, "statefulset")
        rolling = as_dict(as_dict(spec.get("updateStrategy")).get("rollingUpdate"))
        non_negative_int32(errs, "spec.updateStrategy.rollingUpdate.partition",
                           rolling.get("partition"))
        pmp = spec.get("podManagementPolicy")
        if pmp is not None and pmp not in POD_MANAGEMENT:
            errs.unsupported("spec.podManagementPolicy", pmp, POD_MANAGEMENT)


STRATEGY = StatefulSets()
