"""The HTTP API, driven by the official `kubernetes` client and by plain HTTP where the
client hides what is on the wire (Tables, discovery, watch framing)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.objects import deployment, pod, service
from tests.unit.kubeapi.wire import request, watch_lines

kubernetes = pytest.importorskip("kubernetes", reason="the official client is not installed")
from kubernetes import client, config  # noqa: E402
from kubernetes.watch import Watch  # noqa: E402


@pytest.fixture
def server(store: Store) -> Iterator[KubeApiServer]:
    srv = KubeApiServer(store).start()
    yield srv
    srv.stop()


@pytest.fixture
def v1(server: KubeApiServer) -> Iterator[Any]:
    config = client.Configuration()
    config.host = server.url
    with client.ApiClient(config) as api:
        yield client.CoreV1Api(api)


def new_pod(name: str, labels: dict[str, str] | None = None) -> Any:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="app", image="busybox:1.36",
            ports=[client.V1ContainerPort(container_port=8080)])]))


# -- with the official client --------------------------------------------------------------


def test_create_and_list_with_a_label_selector(v1: Any) -> None:
    created = v1.create_namespaced_pod("default", new_pod("web-1", {"app": "web"}))
    v1.create_namespaced_pod("default", new_pod("db-1", {"app": "db"}))
    assert created.metadata.uid
    assert created.status.phase == "Pending"
    found = v1.list_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in found.items] == ["web-1"]
    assert found.metadata.resource_version
    everywhere = v1.list_pod_for_all_namespaces(label_selector="app in (web,db)")
    assert sorted(p.metadata.name for p in everywhere.items) == ["db-1", "web-1"]
    assert v1.read_namespaced_pod("web-1", "default").spec.containers[0].ports[0].protocol \
        == "TCP"


def test_watch_sees_added_then_modified(v1: Any, store: Store) -> None:
    v1.create_namespaced_pod("default", new_pod("web-1"))
    w = Watch()
    seen = []
    for event in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=10):
        seen.append((event["type"], event["object"].status.pod_ip))
        if event["type"] == "ADDED":
            current = store.get("pods", "default", "web-1")
            store.update_status("pods", {**current, "status": {
                "phase": "Running", "podIP": "10.0.1.5"}})
        else:
            w.stop()
    assert seen == [("ADDED", None), ("MODIFIED", "10.0.1.5")]


@pytest.mark.parametrize(("call", "code", "reason"), [
    (lambda v1: v1.read_namespaced_pod("missing", "default"), 404, "NotFound"),
    (lambda v1: v1.create_namespaced_pod("default", new_pod("web-1")), 409, "AlreadyExists"),
    (lambda v1: v1.create_namespaced_pod("default", new_pod("Bad_Name")), 422, "Invalid"),
    (lambda v1: v1.create_namespaced_pod("nowhere", new_pod("x")), 404, "NotFound"),
])
def test_errors_are_status_objects(v1: Any, call: Any, code: int, reason: str) -> None:
    v1.create_namespaced_pod("default", new_pod("web-1"))
    with pytest.raises(client.ApiException) as err:
        call(v1)
    assert err.value.status == code
    status = json.loads(err.value.body or "")
    assert (status["kind"], status["code"], status["reason"]) == ("Status", code, reason)
    if code == 422:
        assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_replicas_beyond_int32_are_an_invalid_status_naming_the_field(
        server: KubeApiServer, store: Store) -> None:
    code, status = request(server, "POST", "/apis/apps/v1/namespaces/default/deployments",
                           deployment("web", replicas=1000000000000000000))
    assert (code, status["kind"], status["reason"]) == (422, "Status", "Invalid")
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.replicas",
        "message": "Invalid value: 1000000000000000000: must be less than or equal to "
                   "2147483647"}]
    assert store.list("deployments")[0] == []


def test_update_conflict_and_patch_and_delete(v1: Any) -> None:
    created = v1.create_namespaced_pod("default", new_pod("web-1"))
    created.metadata.labels = {"v": "1"}
    v1.replace_namespaced_pod("web-1", "default", created)
    with pytest.raises(client.ApiException) as err:
        v1.replace_namespaced_pod("web-1", "default", created)  # stale resourceVersion
    assert err.value.status == 409
    patched = v1.patch_namespaced_pod("web-1", "default", {"metadata": {"labels": {"w": "2"}}})
    assert patched.metadata.labels == {"v": "1", "w": "2"}
    v1.delete_namespaced_pod("web-1", "default")
    assert v1.list_namespaced_pod("default").items == []


def test_services_get_cluster_ips(v1: Any) -> None:
    svc = v1.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"},
                                  ports=[client.V1ServicePort(port=80)])))
    assert svc.spec.cluster_ip == "172.21.0.1"
    assert svc.spec.ports[0].target_port == 80


# -- on the wire ---------------------------------------------------------------------------


def test_discovery(server: KubeApiServer) -> None:
    assert request(server, "GET", "/version")[1]["gitVersion"] == "v1.32.0-podlab"
    assert request(server, "GET", "/api")[1]["versions"] == ["v1"]
    groups = {g["name"] for g in request(server, "GET", "/apis")[1]["groups"]}
    assert groups == {"apps", "discovery.k8s.io", "networking.k8s.io"}
    core = {r["name"]: r for r in request(server, "GET", "/api/v1")[1]["resources"]}
    assert core["pods"]["shortNames"] == ["po"]
    assert core["pods"]["namespaced"]
    assert core["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert not core["nodes"]["namespaced"]
    apps = request(server, "GET", "/apis/apps/v1")[1]
    assert apps["groupVersion"] == "apps/v1"
    assert request(server, "GET", "/openapi/v2")[0] == 404
    index = request(server, "GET", "/openapi/v3")[1]["paths"]
    doc = request(server, "GET", index["apis/apps/v1"]["serverRelativeURL"])[1]
    patch = next(iter(doc["paths"].values()))["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "StatefulSet"
    assert patch["parameters"][0]["name"] == "fieldValidation"


def test_tables(server: KubeApiServer, store: Store) -> None:
    created = store.create("pods", pod("web-1", nodeName="node-a"))
    store.update_status("pods", {**created, "status": {"phase": "Running",
                                                       "podIP": "10.0.1.5"}})
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    code, found = request(server, "GET", "/api/v1/namespaces/default/pods", headers=accept)
    assert code == 200
    assert found["kind"] == "Table"
    names = [c["name"] for c in found["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    row = dict(zip(names, found["rows"][0]["cells"], strict=True))
    assert (row["Name"], row["Status"], row["IP"], row["Node"]) == (
        "web-1", "Running", "10.0.1.5", "node-a")
    assert found["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    full = request(server, "GET", "/api/v1/namespaces/default/pods/web-1?includeObject=Object",
                   headers=accept)[1]
    assert full["rows"][0]["object"]["kind"] == "Pod"
    store.create("services", service("web"))
    svc = request(server, "GET", "/api/v1/namespaces/default/services", headers=accept)[1]
    cells = dict(zip([c["name"] for c in svc["columnDefinitions"]], svc["rows"][0]["cells"],
                     strict=True))
    assert (cells["Type"], cells["Cluster-IP"], cells["Port(s)"]) == (
        "ClusterIP", "172.21.0.1", "80/TCP")


def test_status_subresource_and_patch_types(server: KubeApiServer, store: Store) -> None:
    store.create("pods", pod("web-1"))
    path = "/api/v1/namespaces/default/pods/web-1"
    code, patched = request(server, "PATCH", f"{path}/status",
                            {"status": {"podIP": "10.0.0.7"}, "spec": {"nodeName": "x"}},
                            {"Content-Type": "application/merge-patch+json"})
    assert code == 200
    assert patched["status"]["podIP"] == "10.0.0.7"
    assert "nodeName" not in patched["spec"]
    code, patched = request(server, "PATCH", path, [
        {"op": "add", "path": "/metadata/labels/a", "value": "b"}],
        {"Content-Type": "application/json-patch+json"})
    assert code == 200
    assert patched["metadata"]["labels"] == {"a": "b"}
    code, status = request(server, "PATCH", path, {}, {"Content-Type": "text/plain"})
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    assert request(server, "GET", f"{path}/nope")[0] == 404
    assert request(server, "GET", "/api/v1/namespaces/default/widgets")[0] == 404


def test_put_must_match_the_url(server: KubeApiServer, store: Store) -> None:
    created = store.create("pods", pod("web-1"))
    code, status = request(server, "PUT", "/api/v1/namespaces/default/pods/other", created)
    assert (code, status["reason"]) == (400, "BadRequest")


def test_watch_stream_resumes_filters_and_ends_at_its_timeout(
        server: KubeApiServer, store: Store) -> None:
    since = store.list("pods")[1]
    store.create("pods", pod("a", nodeName="n1"))
    store.create("pods", pod("b", nodeName="n2"))
    events = watch_lines(server, "/api/v1/pods?watch=true&timeoutSeconds=1&resourceVersion="
                                 f"{since}&fieldSelector=spec.nodeName%3Dn2")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_watch_from_an_expired_resource_version_is_an_error_event() -> None:
    store = Store(history=2)
    srv = KubeApiServer(store).start()
    try:
        for name in "abcd":
            store.create("pods", pod(name))
        events = watch_lines(srv, "/api/v1/pods?watch=1&resourceVersion=1&timeoutSeconds=5")
    finally:
        srv.stop()
    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


def test_serves_on_a_given_listening_socket(store: Store) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    srv = KubeApiServer(store, sock=sock).start()
    try:
        assert srv.url == f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert request(srv, "GET", "/api/v1/namespaces/default")[1]["metadata"]["name"] == \
            "default"
    finally:
        srv.stop()


def test_stop_ends_open_watches(store: Store) -> None:
    srv = KubeApiServer(store).start()
    url = urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    conn.request("GET", f"/api/v1/pods?watch=true&resourceVersion={store.list('pods')[1]}")
    resp = conn.getresponse()
    assert resp.status == 200
    srv.stop()
    assert resp.read() == b""  # the stream ends rather than hanging until its timeout
    conn.close()


def test_kubeconfig_works_for_the_official_client(server: KubeApiServer,
                                                   tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kube" / "config", server.url, name="lab-1")
    api = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    with api:
        names = [n.metadata and n.metadata.name
                 for n in client.CoreV1Api(api).list_namespace().items]
    assert names == ["default", "kube-system"]
