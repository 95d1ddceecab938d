"""What StatefulSets and Deployments share: replicas, a selector that must match the pod
template's labels, the template itself, and the columns that show them."""

from __future__ import annotations

from typing import Any

from podlab.kubeapi.kinds.podspec import default_pod_spec, validate_pod_spec
from podlab.kubeapi.selectors import selector_matches
from podlab.kubeapi.tables import Column, Obj, spec_of, status_of
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    non_negative_int32,
    validate_label_selector,
    validate_labels,
)

# int32 counts both kinds have, as upstream's ValidateNonnegativeField checks them
COUNTS = ("replicas", "minReadySeconds", "revisionHistoryLimit")


def default_workload(spec: dict[str, Any]) -> None:
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def validate_workload(errs: Errors, spec: dict[str, Any], kind: str) -> None:
    """Counts within int32, a selector that matches the template's labels, and a pod
    template that restarts always; `kind` ("deployment") words the empty selector's error."""
    for field in COUNTS:
        non_negative_int32(errs, f"spec.{field}", spec.get(field))
    selector = spec.get("selector")
    template = as_dict(spec.get("template"))
    labels = as_dict(template.get("metadata")).get("labels") or {}
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
    policy = as_dict(template.get("spec")).get("restartPolicy", "Always")
    if policy != "Always":
        errs.unsupported("spec.template.spec.restartPolicy", policy, ("Always",))


def _containers(obj: Obj, field: str) -> str:
    template_spec = (spec_of(obj).get("template") or {}).get("spec") or {}
    return ",".join(str(c.get(field, "")) for c in template_spec.get("containers") or [])


READY = Column("Ready", lambda w: f"{status_of(w).get('readyReplicas') or 0}/"
                                  f"{spec_of(w).get('replicas', 1)}")
CONTAINERS = Column("Containers", lambda w: _containers(w, "name"), 1)
IMAGES = Column("Images", lambda w: _containers(w, "image"), 1)
