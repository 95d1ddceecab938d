"""Deployments, without ReplicaSets: the controller owns its pods itself, named
`<name>-<template hash>-<5 chars>` and labelled `pod-template-hash`, as a ReplicaSet's
pods are. A changed template rolls out by surge: all the new pods first, the old ones
deleted once every new one is ready; `Recreate` deletes the old ones first. Pods lost are
replaced under new names, so, unlike a StatefulSet's, they get no fixed IP from the agent.
Pods are made at most `BURST` a sync, each only while the Deployment is still wanted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Hashable
from typing import Any, cast

from podlab.controllers.endpoints import ready
from podlab.controllers.templates import BURST, WorkloadController, owned_pod
from podlab.kubeapi.errors import ApiError

HASH_LABEL = "pod-template-hash"
# The alphabet Kubernetes draws generated name suffixes from: no vowels, no look-alikes.
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict[str, Any]) -> str:
    """A stable name-safe digest of the pod template: equal templates, equal hashes."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(SUFFIX_ALPHABET[b % len(SUFFIX_ALPHABET)] for b in digest[:10])


class DeploymentController(WorkloadController):
    name = resource = "deployments"
    kind = "Deployment"

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        pods = [p for p in self.store.list("pods", namespace)[0] if self.owner(p) == name]
        deploy = self.get("deployments", namespace, name)
        if deploy is None:
            for pod in pods:
                self.delete("pods", namespace, pod["metadata"]["name"])
            return
        spec = deploy["spec"]
        replicas, current = int(spec.get("replicas", 1)), template_hash(spec["template"])
        new = [p for p in pods if p["metadata"]["labels"].get(HASH_LABEL) == current]
        old = [p for p in pods if p not in new]
        if (spec.get("strategy") or {}).get("type") == "Recreate" and old:
            for pod in old:
                self.delete("pods", namespace, pod["metadata"]["name"])
        else:
            # One at a time, the Deployment checked before each, at most BURST per sync:
            # upstream's slow-start batches serve the same end for parallel creates.
            missing = replicas - len(new)
            for _ in range(min(missing, BURST)):
                if not self.still_wanted(deploy):
                    return  # deleted or changed: the event that says so queues a sync
                self._create(deploy, current)
            if missing > BURST:
                self.queue.add(key)  # the rest after the keys already waiting
            if len(new) >= replicas and all(ready(p) for p in new):
                for pod in old:
                    self.delete("pods", namespace, pod["metadata"]["name"])
        # Scaling down removes the pods that are not ready first, then the youngest.
        youngest_first = sorted(new, key=lambda p: p["metadata"]["creationTimestamp"],
                                reverse=True)
        surplus = sorted(youngest_first, key=ready)
        for pod in surplus[:max(0, len(new) - replicas)]:
            self.delete("pods", namespace, pod["metadata"]["name"])
        ready_count = sum(ready(p) for p in pods)
        status = {"observedGeneration": deploy["metadata"].get("generation", 1),
                  "replicas": len(pods), "updatedReplicas": len(new),
                  "readyReplicas": ready_count, "availableReplicas": ready_count,
                  "unavailableReplicas": max(0, replicas - ready_count)}
        if deploy.get("status") != status:
            self.store.update_status("deployments", {**deploy, "status": status})

    def _create(self, deploy: dict[str, Any], current: str) -> None:
        suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(5))
        name = f"{deploy['metadata']['name']}-{current}-{suffix}"
        try:
            self.store.create("pods", owned_pod(deploy, name, {HASH_LABEL: current}))
        except ApiError as e:
            if e.code != 409:  # a suffix taken: the next sync draws another
                raise
