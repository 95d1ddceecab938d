"""Endpoints and EndpointSlices: for every Service with a selector, the ready pods it
selects, with the target ports resolved (a named targetPort is looked up in the pod's
container ports). Level-triggered per Service; a pod change re-syncs its namespace's
Services. Objects are written only when they change, so watches stay quiet.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from podlab.controllers.controller import Controller

SLICE_SUFFIX = "-podlab"  # one slice per Service: the lab never reaches 100 endpoints
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions", []))


def target_port(port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers", []):
        for p in container.get("ports", []):
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


class EndpointsController(Controller):
    name = "endpoints"

    def on_event(self, _kind: str, resource: str, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        if resource == "services":
            self.queue.add((namespace, obj["metadata"]["name"]))
        elif resource == "pods":
            for svc in self.store.list("services", namespace)[0]:
                self.queue.add((namespace, svc["metadata"]["name"]))

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        svc = self.get("services", namespace, name)
        if svc is None:
            self.delete("endpoints", namespace, name)
            self.delete("endpointslices", namespace, name + SLICE_SUFFIX)
            return
        selector = svc["spec"].get("selector") or {}
        if not selector:
            return  # endpoints of a selector-less Service are the user's to write
        pods = [p for p in self.store.list("pods", namespace)[0]
                if selects(selector, p) and ready(p)]
        ports = svc["spec"].get("ports", [])
        self._write("endpoints", endpoints(svc, pods, ports))
        self._write("endpointslices", endpoint_slice(svc, pods, ports))

    def _write(self, resource: str, want: dict[str, Any]) -> None:
        meta = want["metadata"]
        have = self.get(resource, meta["namespace"], meta["name"])
        if have is None:
            self.store.create(resource, want)
            return
        body = {k: v for k, v in want.items() if k not in ("metadata", "apiVersion", "kind")}
        if any(have.get(k) != v for k, v in body.items()):
            self.store.update(resource, {**have, **body})


def _ref(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta["uid"]}


def endpoints(svc: dict[str, Any], pods: list[dict[str, Any]],
              ports: list[dict[str, Any]]) -> dict[str, Any]:
    meta = svc["metadata"]
    subsets = []
    for port in ports:
        serving = [(p, n) for p in pods if (n := target_port(port, p))]
        if serving:
            addresses = [{"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                          "targetRef": _ref(p)} for p, _ in serving]
            subsets.append({"addresses": addresses, "ports": [
                {"name": port.get("name", ""), "port": serving[0][1],
                 "protocol": port.get("protocol", "TCP")}]})
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"namespace": meta["namespace"], "name": meta["name"],
                         "labels": dict(meta.get("labels") or {})},
            "subsets": subsets}


def endpoint_slice(svc: dict[str, Any], pods: list[dict[str, Any]],
                   ports: list[dict[str, Any]]) -> dict[str, Any]:
    meta = svc["metadata"]
    first = pods[0] if pods else None
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": meta["namespace"], "name": meta["name"] + SLICE_SUFFIX,
                     "labels": {SERVICE_NAME_LABEL: meta["name"]}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [p["status"]["podIP"]], "conditions": {"ready": True},
                       "nodeName": p["spec"].get("nodeName"), "targetRef": _ref(p)}
                      for p in pods],
        "ports": [{"name": port.get("name", ""), "protocol": port.get("protocol", "TCP"),
                   "port": target_port(port, first) if first else None} for port in ports],
    }
