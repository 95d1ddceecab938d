"""A pod watch as clients keep one through API server restarts, with the official client
(kubernetes.client.CoreV1Api): shared by the kube API's durability tests and the lab's."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.watch import Watch


class Reflector:
    """client-go's reflector, reduced: list, then watch from the list's resourceVersion
    with the official client; a stream that ends or a server that refuses is watched
    again from the last event's resourceVersion, and 410 Gone is a relist."""

    def __init__(self, v1: Any) -> None:
        self.v1 = v1  # a kubernetes.client.CoreV1Api
        self.events: list[tuple[str, str, str]] = []  # type, name, resourceVersion
        self.relists = 0
        self.names: set[str] = set()
        self.version = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Reflector:
        self._list()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _list(self) -> None:
        raw: Any = self.v1.list_namespaced_pod("default", _preload_content=False)
        found = json.loads(raw.data)
        self.names = {p["metadata"]["name"] for p in found["items"]}
        self.version = found["metadata"]["resourceVersion"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in Watch().stream(self.v1.list_namespaced_pod, "default",
                                            resource_version=self.version,
                                            timeout_seconds=1):
                    meta = event["raw_object"]["metadata"]
                    self.events.append((event["type"], meta["name"], meta["resourceVersion"]))
                    if event["type"] == "DELETED":
                        self.names.discard(meta["name"])
                    else:
                        self.names.add(meta["name"])
                    self.version = meta["resourceVersion"]
            except client.ApiException as e:
                if e.status != 410:
                    raise
                self.relists += 1
                self._relist()
            except Exception:  # the server is restarting: try again, as a client backs off
                self._stop.wait(0.05)

    def _relist(self) -> None:
        while not self._stop.is_set():
            try:
                self._list()
                return
            except Exception:  # still restarting
                self._stop.wait(0.05)

    def wait_for(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while int(self.version or 0) < int(version):
            assert time.monotonic() < deadline, f"at {self.version}, not at {version}"
            assert self._thread.is_alive(), "the reflector died"
            time.sleep(0.02)  # polling the reflector's progress
