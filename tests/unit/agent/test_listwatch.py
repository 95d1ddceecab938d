"""The agent's list-then-watch loop against the lab's API server (in process, no root): a
list, then events, and after the API went away a list again, which brings what changed
meanwhile."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from podlab.cni.kubeclient import api_client
from podlab.cni.listwatch import ListWatch
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.e2e.helpers import eventually


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class Names:
    """A Reader that keeps the namespaces' names, and counts its lists."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.lists = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def listed(self, resource: str, objects: list[dict[str, Any]], version: str) -> None:
        with self._lock:
            self.names = {o["metadata"]["name"] for o in objects}
            self.lists += 1

    def changed(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            (self.names.discard if kind == "DELETED" else self.names.add)(
                obj["metadata"]["name"])

    def failed(self, event: str, **fields: Any) -> None:
        self.failures.append(event)


def test_a_list_then_events_then_a_relist_after_the_api_was_away() -> None:
    store = Store()
    server = KubeApiServer(store).start()
    port = int(server.url.rpartition(":")[2])
    api = api_client(server.url)
    names = Names()
    watch = ListWatch(api, {"namespaces": client.CoreV1Api(api).list_namespace}, names,
                      names.failed, failed="watch_failed").start()
    try:
        eventually(lambda: names.lists == 1, 30, "listed")
        assert {"default", "kube-system"} <= names.names
        store.create("namespaces", namespace("x"))
        eventually(lambda: "x" in names.names, 30, "the event")
        server.stop()  # the watch ends with an error, and so does the next list
        store.create("namespaces", namespace("while-away"))
        store.delete("namespaces", None, "x")
        eventually(lambda: names.failures, 30, "the failure logged")
        server = KubeApiServer(store, port=port).start()
        eventually(lambda: "while-away" in names.names, 30, "listed again")
        assert "x" not in names.names, "the relist replaced what the reader knew"
        assert names.lists >= 2
    finally:
        watch.stop()
        server.stop()
