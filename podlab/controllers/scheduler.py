"""The lab's scheduler: binds each pending pod to a node.

Filters as kube-scheduler's defaults do for what the lab models: `spec.nodeName` set by the
user is kept; a node whose Ready condition is not True (its network plugin down, say) is
not chosen, as the not-ready taint keeps kube-scheduler away; `nodeSelector` must match
the node's labels; a node whose pods would exceed its ENI capacity (the Node's
allocatable pods, from its agent) is not chosen. Among the
rest it spreads: the node with the fewest pods wins, ties by name. A pod that fits nowhere
stays Pending with PodScheduled=False, reason Unschedulable, and is tried again.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Any, cast

from podlab.controllers.controller import Controller

RETRY_UNSCHEDULABLE = 1.0  # seconds


class Scheduler(Controller):
    name = "scheduler"

    def on_event(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        if resource == "pods" and kind != "DELETED" and not obj["spec"].get("nodeName"):
            self.queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        pod = self.get("pods", namespace, name)
        if pod is None or pod["spec"].get("nodeName"):
            return
        node, why = self.choose(pod)
        if node is None:
            self.store.update_status("pods", {**pod, "status": {
                "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                    "reason": "Unschedulable", "message": why}]}})
            self.queue.add(key, delay=RETRY_UNSCHEDULABLE)
            return
        pod["spec"]["nodeName"] = node
        self.store.update("pods", pod)

    def choose(self, pod: dict[str, Any]) -> tuple[str | None, str]:
        """The node for `pod`, or None and kube-scheduler's kind of reason."""
        nodes, _ = self.store.list("nodes")
        bound, _ = self.store.list("pods")
        load = collections.Counter(p["spec"].get("nodeName") for p in bound)
        selector = pod["spec"].get("nodeSelector") or {}
        fits, refused = [], {"were not ready": 0,
                             "didn't match Pod's node affinity/selector": 0,
                             "too many pods (ENI capacity)": 0}
        for node in nodes:
            name, labels = node["metadata"]["name"], node["metadata"].get("labels") or {}
            if not ready(node):
                refused["were not ready"] += 1
            elif any(labels.get(k) != v for k, v in selector.items()):
                refused["didn't match Pod's node affinity/selector"] += 1
            elif load[name] >= int(node["status"]["allocatable"]["pods"]):
                refused["too many pods (ENI capacity)"] += 1
            else:
                fits.append((load[name], name))
        if fits:
            return min(fits)[1], ""
        reasons = ", ".join(f"{n} node(s) {why}" for why, n in refused.items() if n)
        return None, f"0/{len(nodes)} nodes are available: {reasons}."


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))
