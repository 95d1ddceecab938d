"""The agent's view of its node's pods through the Kubernetes API (official client), as
Terway's daemon has it: GC of addresses whose pods are gone, and each pod's owner and
annotations on ADD, which decide whether its IP is kept for it (StatefulSet, fixed IP).
The watch keeps those facts, so an ADD does not ask the API again.

GC is sound against the race with a pod being created: a lease is taken only by an ADD,
and the runtime ADDs only pods that already exist in the API. So a lease older than the
start of a list whose pod is not in that list belongs to a pod that was deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch import Watch

from podlab.cni.kubeclient import api_client
from podlab.cni.pool import Pool

RELIST_BACKOFF = 1.0  # seconds between attempts while the API is unreachable
WATCH_TIMEOUT = 60  # seconds a watch lasts before a relist (bounds drift)


Facts = tuple[str | None, dict[str, str]]  # controller kind, annotations


def _key(obj: Any) -> str:
    return f"{obj.metadata.namespace}/{obj.metadata.name}"


def _facts(obj: Any) -> Facts:
    owners = obj.metadata.owner_references or []
    kind = next((o.kind for o in owners if o.controller), None)
    return kind, dict(obj.metadata.annotations or {})


class PodWatch:
    def __init__(self, url: str, node: str, pool: Pool, events: Callable[..., None],
                 *, token: str = "", ca_file: Path | None = None) -> None:
        self.api = client.CoreV1Api(api_client(url, token, ca_file))
        self.node, self.pool, self.events = node, pool, events
        self._stop = threading.Event()
        self._watch: Any = None  # a watch.Watch while one streams
        self._known: dict[str, Facts] = {}  # the node's pods, as the watch last saw them

    def pod_facts(self, pod: str) -> Facts:
        """The pod's controller kind and annotations, from the watch; on an ADD that
        outran its pod's watch event, from the API; (None, {}) for an unknown pod."""
        if (known := self._known.get(pod)) is not None:
            return known
        namespace, _, name = pod.partition("/")
        try:
            return _facts(self.api.read_namespaced_pod(name, namespace))
        except ApiException:
            return None, {}

    def run(self) -> None:
        """List, GC, watch; again on any failure or when the watch times out."""
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as e:  # the API being away must not stop the agent
                self.events("kube_watch_failed", error=str(e))
                self._stop.wait(RELIST_BACKOFF)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _list_and_watch(self) -> None:
        selector = f"spec.nodeName={self.node}"
        started = time.time()
        listed: Any = self.api.list_pod_for_all_namespaces(field_selector=selector)
        self._known = {_key(p): _facts(p) for p in listed.items}
        released = self.pool.gc(self._known, leased_before=started)
        self.events("kube_synced", pods=len(self._known), released=released)
        self._watch = Watch()
        for event in self._watch.stream(self.api.list_pod_for_all_namespaces,
                                        field_selector=selector,
                                        resource_version=listed.metadata.resource_version,
                                        timeout_seconds=WATCH_TIMEOUT):
            if self._stop.is_set():
                return
            obj: Any = event["object"]
            pod = _key(obj)
            if event["type"] != "DELETED":
                self._known[pod] = _facts(obj)
                continue
            self._known.pop(pod, None)
            if self.pool.release(pod):
                self.events("kube_pod_deleted", pod=pod)
