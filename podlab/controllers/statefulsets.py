"""StatefulSets, OrderedReady as the default policy is: pods `<name>-0 … <name>-(N-1)`,
each created only once every lower ordinal is Running and Ready, scaled down from the
highest ordinal, and recreated under the same name when deleted. The pods carry a
controller reference to their StatefulSet: that is what tells the node agent to keep a
pod's IP for it (Terway's fixed IP for StatefulSet pods).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from podlab.controllers.endpoints import ready
from podlab.controllers.templates import WorkloadController, owned_pod

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


class StatefulSetController(WorkloadController):
    name = resource = "statefulsets"
    kind = "StatefulSet"

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        pods = {p["metadata"]["name"]: p for p in self.store.list("pods", namespace)[0]
                if self.owner(p) == name}
        sts = self.get("statefulsets", namespace, name)
        if sts is None:
            for pod in pods:
                self.delete("pods", namespace, pod)
            return
        replicas = int(sts["spec"].get("replicas", 1))
        for index in range(replicas):
            pod = pods.get(f"{name}-{index}")
            if pod is None:
                if not self.still_wanted(sts):
                    return  # deleted or changed: the event that says so queues a sync
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
    name = f"{sts['metadata']['name']}-{index}"
    subdomain = sts["spec"].get("serviceName")
    return owned_pod(sts, name, {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(index)},
                     hostname=name, **({"subdomain": subdomain} if subdomain else {}))
