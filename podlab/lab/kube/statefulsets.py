"""StatefulSets, OrderedReady as the default policy is: pods `<name>-0 … <name>-(N-1)`,
each created only once every lower ordinal is Running and Ready, scaled down from the
highest ordinal, and recreated under the same name when deleted. The pods carry a
controller reference to their StatefulSet: that is what tells the node agent to keep a
pod's IP for it (Terway's fixed IP for StatefulSet pods).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any, cast

from podlab.lab.kube.controller import Controller
from podlab.lab.kube.endpoints import ready

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def owner(pod: dict[str, Any]) -> str | None:
    """The name of the StatefulSet controlling `pod`, if one does."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "StatefulSet" and ref.get("controller"):
            return str(ref["name"])
    return None


class StatefulSetController(Controller):
    name = "statefulsets"

    def on_event(self, _kind: str, resource: str, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        if resource == "statefulsets":
            self.queue.add((namespace, obj["metadata"]["name"]))
        elif resource == "pods" and (name := owner(obj)):
            self.queue.add((namespace, name))

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        pods = {p["metadata"]["name"]: p for p in self.store.list("pods", namespace)[0]
                if owner(p) == name}
        sts = self.get("statefulsets", namespace, name)
        if sts is None:
            for pod in pods:
                self.delete("pods", namespace, pod)
            return
        replicas = int(sts["spec"].get("replicas", 1))
        for index in range(replicas):
            pod = pods.get(f"{name}-{index}")
            if pod is None:
                self.store.create("pods", pod_for(sts, index))
                break  # OrderedReady: the next one waits for this one
            if not ready(pod):
                break
        for extra in sorted((p for p in pods if _ordinal(p, name) >= replicas),
                            key=lambda p: -_ordinal(p, name))[:1]:
            self.delete("pods", namespace, extra)  # one at a time, highest first
        ready_count = sum(ready(p) for p in pods.values() if _ordinal(
            p["metadata"]["name"], name) < replicas)
        status = {"replicas": min(len(pods), replicas), "readyReplicas": ready_count,
                  "currentReplicas": min(len(pods), replicas),
                  "availableReplicas": ready_count,
                  "observedGeneration": sts["metadata"].get("generation", 1)}
        if sts.get("status") != status:
            self.store.update_status("statefulsets", {**sts, "status": status})


def _ordinal(pod_name: str, sts_name: str) -> int:
    suffix = pod_name[len(sts_name) + 1:]
    return int(suffix) if suffix.isdigit() else -1


def pod_for(sts: dict[str, Any], index: int) -> dict[str, Any]:
    meta, spec = sts["metadata"], sts["spec"]
    template = copy.deepcopy(spec["template"])
    name = f"{meta['name']}-{index}"
    labels = {**(template.get("metadata") or {}).get("labels", {}),
              POD_NAME_LABEL: name, POD_INDEX_LABEL: str(index)}
    pod_spec = {**template["spec"], "hostname": name}
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                     "annotations": dict((template.get("metadata") or {}).get(
                         "annotations") or {}),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                          "name": meta["name"], "uid": meta["uid"],
                                          "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": pod_spec,
    }
