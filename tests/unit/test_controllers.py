"""The controllers' decisions, on a store with no lab behind it."""

from __future__ import annotations

import re
import time
from typing import Any

from podlab.controllers.deployments import HASH_LABEL, SUFFIX_ALPHABET, DeploymentController
from podlab.controllers.endpoints import endpoint_slice, target_port
from podlab.controllers.scheduler import Scheduler
from podlab.controllers.service_proxy import service_ports
from podlab.controllers.statefulsets import StatefulSetController
from podlab.controllers.templates import BURST, controller_of
from podlab.datapath.kubeproxy import Backend
from podlab.kubeapi.store import Store
from podlab.lab.kube.controlplane import node_object


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [
                {"name": "http", "containerPort": 8080}]}], **spec}}


def test_the_scheduler_spreads_filters_by_selector_and_capacity() -> None:
    store = Store()
    for name, zone, capacity in (("n1", "z1", 2), ("n2", "z2", 1), ("n3", "z2", 2)):
        store.create("nodes", node_object(name, "10.0.0.1", zone, "ecs.g7.large", capacity))
    scheduler = Scheduler(store)
    store.create("pods", pod("a", nodeName="n3"))
    assert scheduler.choose(pod("b"))[0] == "n1", "fewest pods, ties by name"
    store.create("pods", pod("b", nodeName="n1"))
    assert scheduler.choose(pod("c"))[0] == "n2"
    store.create("pods", pod("c", nodeName="n2"))
    assert scheduler.choose(pod("d", nodeSelector={"topology.kubernetes.io/zone": "z2"}))[
        0] == "n3", "n2 is full"
    store.create("pods", pod("d", nodeName="n3"))
    store.create("pods", pod("e", nodeName="n1"))
    node, why = scheduler.choose(pod("f"))
    assert node is None
    assert why == "0/3 nodes are available: 3 node(s) too many pods (ENI capacity)."
    node, why = scheduler.choose(pod("g", nodeSelector={"disk": "ssd"}))
    assert "3 node(s) didn't match Pod's node affinity/selector" in why


def test_the_scheduler_passes_over_a_node_whose_network_is_not_ready() -> None:
    store = Store()
    for name in ("n1", "n2"):
        store.create("nodes", node_object(name, "10.0.0.1", "z1", "ecs.g7.large", 10))
    down = store.get("nodes", None, "n1")
    down["status"]["conditions"] = [{"type": "Ready", "status": "False",
                                     "reason": "NetworkPluginNotReady"}]
    store.update_status("nodes", down)
    scheduler = Scheduler(store)
    assert scheduler.choose(pod("a"))[0] == "n2", "n1 has fewer pods, but is not ready"
    store.update_status("nodes", {**store.get("nodes", None, "n2"),
                                  "status": {**down["status"]}})
    node, why = scheduler.choose(pod("b"))
    assert node is None
    assert why == "0/2 nodes are available: 2 node(s) were not ready."


def test_endpoints_resolve_named_ports_and_kube_proxy_takes_ready_ones() -> None:
    web = pod("web-0", {"app": "web"}, nodeName="n1")
    web["metadata"]["uid"] = "u1"
    web["status"] = {"podIP": "192.168.0.7"}
    svc: dict[str, Any] = {"metadata": {"namespace": "default", "name": "web"},
           "spec": {"clusterIP": "172.21.0.9", "selector": {"app": "web"}, "ports": [
               {"name": "http", "port": 80, "targetPort": "http"},
               {"name": "raw", "port": 81, "targetPort": 9000, "protocol": "UDP"}]}}
    assert target_port(svc["spec"]["ports"][0], web) == 8080
    assert target_port(svc["spec"]["ports"][1], web) == 9000
    ready = endpoint_slice(svc, [web], svc["spec"]["ports"])
    not_ready = {**ready, "endpoints": [{**ready["endpoints"][0], "conditions": {
        "ready": False}}]}
    headless = {"metadata": {"namespace": "default", "name": "h"},
                "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    ports = {p.port_name: p for p in service_ports([svc, headless], [ready])}
    assert ports["http"].backends == (Backend("192.168.0.7", 8080),)
    assert ports["raw"].protocol == "udp"
    assert ports["raw"].backends == (Backend("192.168.0.7", 9000),)
    assert all(p.backends == () for p in service_ports([svc], [not_ready]))
    assert {p.name for p in service_ports([svc, headless], [ready])} == {"web"}


def _deployment(replicas: int, strategy: str = "RollingUpdate", image: str = "v1"
                ) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "strategy": {"type": strategy},
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def _owned(store: Store) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in store.list("pods", "default")[0]
            if controller_of(p, "Deployment") == "web"}


def _make_ready(store: Store, *names: str) -> None:
    for name in names:
        pod = store.get("pods", "default", name)
        store.update_status("pods", {**pod, "status": {
            "phase": "Running", "podIP": "192.168.0.9",
            "conditions": [{"type": "Ready", "status": "True"}]}})


def _change(store: Store, **spec: Any) -> None:
    deploy = store.get("deployments", "default", "web")
    store.update("deployments", {**deploy, "spec": {**deploy["spec"], **spec}})


def test_a_deployment_keeps_its_replicas_and_rolls_a_new_template_out_by_surge() -> None:
    store, key = Store(), ("default", "web")
    controller = DeploymentController(store)  # not started: each sync is called here
    store.create("deployments", _deployment(3))
    controller.sync(key)
    first = _owned(store)
    assert len(first) == 3
    (current,) = {p["metadata"]["labels"][HASH_LABEL] for p in first.values()}
    assert all(re.fullmatch(rf"web-{current}-[{SUFFIX_ALPHABET}]{{5}}", n) for n in first)

    lost = sorted(first)[0]
    store.delete("pods", "default", lost)
    controller.sync(key)
    assert len(_owned(store)) == 3
    assert lost not in _owned(store), "replaced, under a new name"

    survivor = sorted(_owned(store))[1]
    _make_ready(store, survivor)
    _change(store, replicas=1)
    controller.sync(key)
    assert list(_owned(store)) == [survivor], "scaling down takes the pods not ready first"

    old = _owned(store)
    _change(store, template=_deployment(1, image="v2")["spec"]["template"])
    controller.sync(key)
    new = set(_owned(store)) - set(old)
    assert len(new) == 1
    assert set(old) <= set(_owned(store)), "the old pod stays until..."
    _make_ready(store, *new)
    controller.sync(key)
    assert set(_owned(store)) == new, "...the new one is ready"
    controller.sync(key)
    status = store.get("deployments", "default", "web")["status"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"]) == (1, 1, 1)

    store.delete("deployments", "default", "web")
    controller.sync(key)
    assert _owned(store) == {}


def test_scaling_a_deployment_down_keeps_its_ready_pod_whichever_it_is() -> None:
    for chosen in range(3):
        store, key = Store(), ("default", "web")
        controller = DeploymentController(store)
        store.create("deployments", _deployment(3))
        controller.sync(key)
        keep = sorted(_owned(store))[chosen]
        _make_ready(store, keep)
        _change(store, replicas=1)
        controller.sync(key)
        assert list(_owned(store)) == [keep]


def test_recreate_deletes_the_old_pods_before_making_new_ones() -> None:
    store, key = Store(), ("default", "web")
    controller = DeploymentController(store)
    store.create("deployments", _deployment(2, strategy="Recreate"))
    controller.sync(key)
    old = set(_owned(store))
    _change(store, template=_deployment(2, image="v2")["spec"]["template"])
    controller.sync(key)
    assert _owned(store) == {}, "no new pod while an old one lives"
    controller.sync(key)
    assert len(_owned(store)) == 2
    assert not set(_owned(store)) & old


def test_a_deployment_deleted_while_its_pods_are_made_gets_no_more() -> None:
    store, key = Store(), ("default", "web")
    controller = DeploymentController(store)
    made: list[str] = []

    def delete_after_three(kind: str, resource: str, obj: dict[str, Any]) -> None:
        if kind == "ADDED" and resource == "pods":
            made.append(obj["metadata"]["name"])
            if len(made) == 3:  # as `kubectl delete` would, from another client
                store.delete("deployments", "default", "web")

    store.subscribe(delete_after_three)
    store.create("deployments", _deployment(100))
    controller.sync(key)
    assert len(made) == 3, "not one pod after its Deployment was gone"
    controller.sync(key)  # the sync its delete event queues
    assert _owned(store) == {}


def test_a_deployment_changed_while_its_pods_are_made_is_read_again() -> None:
    store, key = Store(), ("default", "web")
    controller = DeploymentController(store)
    made: list[str] = []

    def scale_down_after_two(kind: str, resource: str, obj: dict[str, Any]) -> None:
        if kind == "ADDED" and resource == "pods":
            made.append(obj["metadata"]["name"])
            if len(made) == 2:
                _change(store, replicas=1)

    store.subscribe(scale_down_after_two)
    store.create("deployments", _deployment(100))
    controller.sync(key)
    assert len(made) == 2, "the old count was not acted on after the change"
    controller.sync(key)
    assert len(_owned(store)) == 1


def test_a_large_deployment_is_made_a_burst_per_sync_and_finished_by_its_queue() -> None:
    store, key = Store(), ("default", "web")
    controller = DeploymentController(store)
    store.create("deployments", _deployment(2 * BURST + 7))
    controller.sync(key)
    assert len(_owned(store)) == BURST, "one sync makes a bounded burst"
    controller.start()  # not subscribed: only the sync's own requeue can finish the job
    try:
        deadline = time.monotonic() + 30
        while len(_owned(store)) < 2 * BURST + 7:
            assert time.monotonic() < deadline, f"{len(_owned(store))} pods after 30 s"
            time.sleep(0.05)  # polling the store
    finally:
        controller.stop()
    assert len(_owned(store)) == 2 * BURST + 7


class _DeletedWhenRead(Store):
    """A store whose StatefulSet `db` is deleted by another client just after the
    controller first reads it: the race between a sync and `kubectl delete`."""

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        found = super().get(resource, namespace, name)
        if resource == "statefulsets" and not getattr(self, "raced", False):
            self.raced = True
            self.delete(resource, namespace, name)
        return found


def test_a_statefulset_deleted_during_its_sync_gets_no_pod() -> None:
    store = _DeletedWhenRead()
    controller = StatefulSetController(store)
    store.create("statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    controller.sync(("default", "db"))
    assert store.list("pods", "default")[0] == []
