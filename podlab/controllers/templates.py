"""Pods made from a workload's pod template, and the controller reference that ties them
to it: what the StatefulSet and Deployment controllers share."""

from __future__ import annotations

import copy
from typing import Any

from podlab.controllers.controller import Controller

# Pods one sync creates at most, as the ReplicaSet controller's burstReplicas: a large
# count is reached over several syncs, between which other keys (its delete) are handled.
BURST = 500


class WorkloadController(Controller):
    """A controller of pods made from its objects' templates: keyed by (namespace, name) of
    the object, for events on the object or on a pod it controls."""

    resource = "workloads"  # the resource this controller's objects are, e.g. statefulsets
    kind = "Workload"  # their kind, as pods' controller references name it

    def owner(self, pod: dict[str, Any]) -> str | None:
        return controller_of(pod, self.kind)

    def still_wanted(self, owner: dict[str, Any]) -> bool:
        """Whether `owner` is still there as read (same uid and generation) and not being
        deleted: asked before every pod made for it, so that deleting or changing it stops
        the pods it was getting at once rather than after the sync."""
        meta = owner["metadata"]
        now = self.get(self.resource, meta["namespace"], meta["name"])
        return (now is not None and not now["metadata"].get("deletionTimestamp")
                and (now["metadata"]["uid"], now["metadata"].get("generation")) ==
                (meta["uid"], meta.get("generation")))

    def on_event(self, _kind: str, resource: str, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        if resource == self.resource:
            self.queue.add((namespace, obj["metadata"]["name"]))
        elif resource == "pods" and (name := self.owner(obj)):
            self.queue.add((namespace, name))


def controller_of(pod: dict[str, Any], kind: str) -> str | None:
    """The name of the `kind` object controlling `pod`, if one does."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref["name"])
    return None


def owned_pod(owner: dict[str, Any], name: str, labels: dict[str, str],
              **spec: Any) -> dict[str, Any]:
    """A pod named `name` from `owner`'s template, with `labels` and `spec` fields added,
    controlled by `owner`."""
    meta = owner["metadata"]
    template = copy.deepcopy(owner["spec"]["template"])
    template_meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {**template_meta.get("labels", {}), **labels},
                     "annotations": dict(template_meta.get("annotations") or {}),
                     "ownerReferences": [{"apiVersion": owner["apiVersion"],
                                          "kind": owner["kind"], "name": meta["name"],
                                          "uid": meta["uid"], "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {**template["spec"], **spec},
    }
