"""The store: CRUD semantics, conflicts, patches, selectors, validation, cluster IPs, watches."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from podlab.kubeapi.store import ApiError, Store
from tests.unit.kubeapi.objects import deployment, pod, service, statefulset


def causes(err: pytest.ExceptionInfo[ApiError]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in err.value.causes}


# -- create / get / list / delete ----------------------------------------------------------


def test_create_sets_server_fields_and_defaults(store: Store) -> None:
    bare = {"metadata": {"name": "a"}, "spec": pod("a")["spec"]}  # no namespace, no kind
    created = store.create("pods", bare)
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert created["apiVersion"] == "v1"
    assert created["kind"] == "Pod"
    assert created["status"] == {"phase": "Pending"}
    assert created["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert store.get("pods", "default", "a") == created
    items, rv = store.list("pods")
    assert [i["metadata"]["name"] for i in items] == ["a"]
    assert rv == meta["resourceVersion"]


def test_resource_versions_grow_with_every_write(store: Store) -> None:
    a = store.create("pods", pod("a"))
    b = store.create("pods", pod("b"))
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    gone = store.delete("pods", "default", "a")
    assert int(gone["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    assert store.list("pods")[1] == gone["metadata"]["resourceVersion"]


def test_generate_name(store: Store) -> None:
    obj = pod("")
    obj["metadata"]["generateName"] = "web-"
    created = store.create("pods", obj)
    assert created["metadata"]["name"].startswith("web-")
    assert len(created["metadata"]["name"]) == len("web-") + 5


def test_already_exists_and_not_found(store: Store) -> None:
    store.create("pods", pod("a"))
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("a"))
    assert (err.value.code, err.value.reason) == (409, "AlreadyExists")
    with pytest.raises(ApiError) as err:
        store.get("pods", "default", "missing")
    assert (err.value.code, err.value.reason) == (404, "NotFound")
    assert err.value.status()["details"] == {"name": "missing", "kind": "pods"}
    with pytest.raises(ApiError) as err:
        store.delete("pods", "default", "missing")
    assert err.value.code == 404


def test_namespace_must_exist(store: Store) -> None:
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("a", namespace="nowhere"))
    assert err.value.code == 404
    assert 'namespaces "nowhere" not found' in err.value.message
    store.create("namespaces", {"metadata": {"name": "nowhere"}})
    assert store.create("pods", pod("a", namespace="nowhere"))["metadata"]["namespace"] == \
        "nowhere"
    assert {n["metadata"]["name"] for n in store.list("namespaces")[0]} == {
        "default", "kube-system", "nowhere"}


def test_list_by_namespace_is_ordered(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "b"}})
    for ns, name in (("b", "y"), ("default", "z"), ("default", "x")):
        store.create("pods", pod(name, namespace=ns))
    assert [p["metadata"]["name"] for p in store.list("pods", "default")[0]] == ["x", "z"]
    assert [(p["metadata"]["namespace"], p["metadata"]["name"])
            for p in store.list("pods")[0]] == [("b", "y"), ("default", "x"), ("default", "z")]


def test_deleting_a_namespace_with_objects_waits_for_them(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "lab"}})
    store.create("pods", pod("a", namespace="lab"))
    terminating = store.delete("namespaces", None, "lab")
    assert terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("b", namespace="lab"))
    assert err.value.code == 403
    store.delete("pods", "lab", "a")  # the last object: the namespace goes with it
    with pytest.raises(ApiError):
        store.get("namespaces", None, "lab")
    with pytest.raises(ApiError) as err:
        store.delete("namespaces", None, "default")
    assert err.value.code == 403


def test_terminating_namespace_takes_its_objects_after_the_grace_period() -> None:
    store = Store(namespace_grace=0.05)
    store.create("namespaces", {"metadata": {"name": "lab"}})
    store.create("pods", pod("a", namespace="lab"))
    w = store.watch("namespaces", resource_version=store.list("namespaces")[1])
    store.delete("namespaces", None, "lab")
    assert [(e or {}).get("type") for e in (w.get(timeout=5), w.get(timeout=5))] == [
        "MODIFIED", "DELETED"]
    assert store.list("pods")[0] == []
    w.close()


# -- update / status / conflicts -----------------------------------------------------------


def test_update_conflicts_on_a_stale_resource_version(store: Store) -> None:
    first = store.create("pods", pod("a"))
    first["metadata"]["labels"] = {"v": "1"}
    second = store.update("pods", first)
    first["metadata"]["labels"] = {"v": "2"}
    with pytest.raises(ApiError) as err:
        store.update("pods", first)  # still carries the first resourceVersion
    assert (err.value.code, err.value.reason) == (409, "Conflict")
    del first["metadata"]["resourceVersion"]  # unconditional update
    assert store.update("pods", first)["metadata"]["labels"] == {"v": "2"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]


def test_update_of_nothing_new_is_not_a_change(store: Store) -> None:
    created = store.create("pods", pod("a"))
    assert store.update("pods", created) == created
    assert store.list("pods")[1] == created["metadata"]["resourceVersion"]


def test_status_only_through_the_subresource(store: Store) -> None:
    created = store.create("pods", pod("a"))
    created["status"] = {"podIP": "10.0.0.9"}
    created["metadata"]["labels"] = {"changed": "yes"}
    updated = store.update("pods", created)
    assert updated["status"] == {"phase": "Pending"}  # status ignored by the main resource
    assert updated["metadata"]["labels"] == {"changed": "yes"}
    updated["status"] = {"phase": "Running", "podIP": "10.0.0.9"}
    updated["metadata"]["labels"] = {"ignored": "yes"}
    after = store.update_status("pods", updated)
    assert after["status"]["podIP"] == "10.0.0.9"
    assert after["metadata"]["labels"] == {"changed": "yes"}
    with pytest.raises(ApiError):
        store.update_status("endpoints", {"metadata": {"name": "x"}})


def test_node_status_can_be_set_on_create(store: Store) -> None:
    node = store.create("nodes", {"metadata": {"name": "n1"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "192.168.0.10"}]}})
    assert node["status"]["addresses"][0]["address"] == "192.168.0.10"
    assert "namespace" not in node["metadata"]


# -- patches -------------------------------------------------------------------------------


def two_containers() -> dict[str, Any]:
    obj = pod("a")
    obj["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1",
                                      "env": [{"name": "A", "value": "1"}]})
    return obj


def test_merge_patch(store: Store) -> None:
    store.create("pods", pod("a", labels={"app": "web", "old": "x"}))
    patched = store.patch("pods", "default", "a",
                          {"metadata": {"labels": {"old": None, "new": "y"}}}, "merge")
    assert patched["metadata"]["labels"] == {"app": "web", "new": "y"}
    replaced = store.patch("pods", "default", "a", {"spec": {"containers": [
        {"name": "only", "image": "nginx:1"}]}}, "merge")
    assert [c["name"] for c in replaced["spec"]["containers"]] == ["only"]  # lists replace


def test_strategic_merge_patch_merges_containers_by_name(store: Store) -> None:
    store.create("pods", two_containers())
    patched = store.patch("pods", "default", "a", {"spec": {"containers": [
        {"name": "sidecar", "image": "envoy:2", "env": [{"name": "B", "value": "2"}]}]}},
        "strategic")
    containers = {c["name"]: c for c in patched["spec"]["containers"]}
    assert containers["app"]["image"] == "busybox:1.36"
    assert containers["sidecar"]["image"] == "envoy:2"
    assert [e["name"] for e in containers["sidecar"]["env"]] == ["A", "B"]


def test_strategic_merge_patch_directives(store: Store) -> None:
    store.create("pods", two_containers())
    patched = store.patch("pods", "default", "a", {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9090}]}]}},
        "strategic")
    app = patched["spec"]["containers"][0]
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]  # by containerPort
    patched = store.patch("pods", "default", "a", {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "$patch": "delete"}]}}, "strategic")
    assert [c["name"] for c in patched["spec"]["containers"]] == ["sidecar"]


def test_strategic_merge_patch_merges_service_ports_by_port(store: Store) -> None:
    store.create("services", service("web", ports=[{"port": 80, "name": "http"}]))
    patched = store.patch("services", "default", "web", {"spec": {"ports": [
        {"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]}}, "strategic")
    assert [(p["port"], p["targetPort"]) for p in patched["spec"]["ports"]] == [
        (80, 8080), (443, 443)]


def test_json_patch(store: Store) -> None:
    store.create("pods", pod("a", labels={"app": "web"}))
    patched = store.patch("pods", "default", "a", [
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1"},
        {"op": "test", "path": "/metadata/labels/app", "value": "web"}], "json")
    assert patched["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert patched["spec"]["containers"][0]["image"] == "nginx:1"
    with pytest.raises(ApiError) as err:
        store.patch("pods", "default", "a", [{"op": "remove", "path": "/metadata/nope"}], "json")
    assert err.value.code == 422


def test_patch_is_validated_and_checks_resource_version(store: Store) -> None:
    created = store.create("pods", pod("a"))
    with pytest.raises(ApiError) as err:
        store.patch("pods", "default", "a", {"spec": {"containers": [
            {"name": "app", "image": ""}]}}, "strategic")
    assert "spec.containers[0].image" in causes(err)
    store.patch("pods", "default", "a", {"metadata": {"labels": {"x": "1"}}}, "merge")
    with pytest.raises(ApiError) as err:
        store.patch("pods", "default", "a", {"metadata": {
            "resourceVersion": created["metadata"]["resourceVersion"], "labels": {"y": "2"}}},
            "merge")
    assert err.value.code == 409


# -- selectors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "names"), [
    ("app=web", ["a", "b"]),
    ("app==web,tier=db", ["b"]),
    ("app!=web", ["c"]),
    ("tier in (db, cache)", ["b", "c"]),
    ("tier notin (db)", ["a", "c"]),
    ("tier", ["b", "c"]),
    ("!tier", ["a"]),
    ("", ["a", "b", "c"]),
])
def test_label_selectors(store: Store, selector: str, names: list[str]) -> None:
    store.create("pods", pod("a", labels={"app": "web"}))
    store.create("pods", pod("b", labels={"app": "web", "tier": "db"}))
    store.create("pods", pod("c", labels={"app": "batch", "tier": "cache"}))
    assert [p["metadata"]["name"] for p in store.list("pods", label_selector=selector)[0]] == \
        names


def test_field_selectors(store: Store) -> None:
    store.create("pods", pod("a", nodeName="n1"))
    store.create("pods", pod("b", nodeName="n2"))
    store.create("pods", pod("c"))

    def names(selector: str) -> list[str]:
        return [p["metadata"]["name"] for p in store.list("pods", field_selector=selector)[0]]

    assert names("spec.nodeName=n1") == ["a"]
    assert names("spec.nodeName!=n1") == ["b", "c"]
    assert names("spec.nodeName=") == ["c"]
    assert names("metadata.name=b,metadata.namespace=default") == ["b"]


@pytest.mark.parametrize(("labels", "fields"), [
    ("app in (web", ""), ("a=b=c", ""), ("bad key!", ""), ("", "spec.unknown=x"),
    ("", "no-operator")])
def test_bad_selectors_are_bad_requests(store: Store, labels: str, fields: str) -> None:
    with pytest.raises(ApiError) as err:
        store.list("pods", label_selector=labels, field_selector=fields)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")


# -- validation ----------------------------------------------------------------------------


def test_invalid_container_port_names_its_field_path(store: Store) -> None:
    bad = pod("a")
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 80},
                                             {"containerPort": 70000, "protocol": "ICMP"}]
    with pytest.raises(ApiError) as err:
        store.create("pods", bad)
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    found = causes(err)
    assert found["spec.containers[0].ports[1].containerPort"] == \
        "Invalid value: 70000: must be between 1 and 65535, inclusive"
    assert found["spec.containers[0].ports[1].protocol"].startswith('Unsupported value: "ICMP"')
    assert err.value.message.startswith('Pod "a" is invalid: [')
    status = err.value.status()
    assert status["details"]["kind"] == "Pod"
    assert status["details"]["name"] == "a"


@pytest.mark.parametrize(("resource", "obj", "field"), [
    ("pods", {**pod("a"), "spec": {"containers": []}}, "spec.containers"),
    ("pods", {**pod("a"), "spec": {"containers": [{"name": "c"}]}}, "spec.containers[0].image"),
    ("pods", {**pod("a"), "spec": {"containers": [{"image": "x"}]}}, "spec.containers[0].name"),
    ("pods", pod("Not_A_Name"), "metadata.name"),
    ("pods", pod("a", labels={"app": "has space"}), "metadata.labels"),
    ("services", service("9starts-with-digit"), "metadata.name"),
    ("services", service("web", selector={"app": "-bad-"}), "spec.selector"),
    ("services", service("web", ports=[{"port": 0}]), "spec.ports[0].port"),
    ("services", service("web", ports=[{"port": 80, "protocol": "HTTP"}]),
     "spec.ports[0].protocol"),
    ("services", service("web", ports=[]), "spec.ports"),
    ("statefulsets", statefulset("db", {"app": "db"}, {"app": "other"}),
     "spec.template.metadata.labels"),
    ("namespaces", {"metadata": {"name": "a.b"}}, "metadata.name"),
])
def test_validation_causes(store: Store, resource: str, obj: dict[str, Any],
                           field: str) -> None:
    with pytest.raises(ApiError) as err:
        store.create(resource, obj)
    assert err.value.code == 422
    assert field in causes(err)


@pytest.mark.parametrize(("resource", "obj", "field", "message"), [
    ("deployments", deployment("web", replicas=10**18), "spec.replicas",
     "Invalid value: 1000000000000000000: must be less than or equal to 2147483647"),
    ("deployments", deployment("web", replicas=2**31), "spec.replicas",
     "Invalid value: 2147483648: must be less than or equal to 2147483647"),
    ("deployments", deployment("web", replicas=-1), "spec.replicas",
     "Invalid value: -1: must be greater than or equal to 0"),
    ("deployments", deployment("web", replicas=True), "spec.replicas",
     "Invalid value: true: must be an integer"),
    ("deployments", deployment("web", replicas="3"), "spec.replicas",
     'Invalid value: "3": must be an integer'),
    ("deployments", deployment("web", progressDeadlineSeconds=2**40),
     "spec.progressDeadlineSeconds",
     "Invalid value: 1099511627776: must be less than or equal to 2147483647"),
    ("deployments", deployment("web", revisionHistoryLimit=-3), "spec.revisionHistoryLimit",
     "Invalid value: -3: must be greater than or equal to 0"),
    ("statefulsets", {**statefulset("db", {"app": "db"}, {"app": "db"}), "spec": {
        **statefulset("db", {"app": "db"}, {"app": "db"})["spec"], "replicas": 2**63}},
     "spec.replicas",
     "Invalid value: 9223372036854775808: must be less than or equal to 2147483647"),
    ("statefulsets", {**statefulset("db", {"app": "db"}, {"app": "db"}), "spec": {
        **statefulset("db", {"app": "db"}, {"app": "db"})["spec"], "updateStrategy": {
            "type": "RollingUpdate", "rollingUpdate": {"partition": 2**31}}}},
     "spec.updateStrategy.rollingUpdate.partition",
     "Invalid value: 2147483648: must be less than or equal to 2147483647"),
])
def test_workload_counts_are_non_negative_int32(store: Store, resource: str,
                                                obj: dict[str, Any], field: str,
                                                message: str) -> None:
    with pytest.raises(ApiError) as err:
        store.create(resource, obj)
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert causes(err) == {field: message}


def test_the_largest_int32_is_a_valid_replica_count(store: Store) -> None:
    made = store.create("deployments", deployment("web", replicas=2**31 - 1))
    assert made["spec"]["replicas"] == 2**31 - 1
    with pytest.raises(ApiError) as err:
        store.patch("deployments", "default", "web", {"spec": {"replicas": 2**31}}, "merge")
    assert causes(err) == {"spec.replicas": "Invalid value: 2147483648: must be less than "
                                            "or equal to 2147483647"}


def test_statefulset_with_matching_selector_is_accepted(store: Store) -> None:
    sts = store.create("statefulsets", statefulset("db", {"app": "db"}, {"app": "db"}))
    assert sts["spec"]["replicas"] == 1
    assert sts["apiVersion"] == "apps/v1"


# -- services' cluster IPs -----------------------------------------------------------------


def test_cluster_ips_come_from_the_service_cidr(store: Store) -> None:
    a = store.create("services", service("a"))
    b = store.create("services", service("b"))
    assert a["spec"]["clusterIP"] == "172.21.0.1"
    assert a["spec"]["clusterIPs"] == ["172.21.0.1"]
    assert b["spec"]["clusterIP"] == "172.21.0.2"
    assert a["spec"]["type"] == "ClusterIP"
    assert a["spec"]["ports"][0]["targetPort"] == 80
    store.delete("services", "default", "a")
    assert store.create("services", service("c"))["spec"]["clusterIP"] == "172.21.0.1"


def test_requested_and_headless_cluster_ips(store: Store) -> None:
    fixed = store.create("services", service("fixed", clusterIP="172.21.3.4"))
    assert fixed["spec"]["clusterIP"] == "172.21.3.4"
    for wanted in ("172.21.3.4", "10.0.0.1"):
        with pytest.raises(ApiError) as err:
            store.create("services", service("again", clusterIP=wanted))
        assert err.value.code == 422
        assert "spec.clusterIPs" in causes(err)
    headless = store.create("services", service("headless", clusterIP="None", ports=[]))
    assert headless["spec"]["clusterIPs"] == ["None"]


def test_cluster_ip_is_immutable_and_kept_on_update(store: Store) -> None:
    created = store.create("services", service("a"))
    del created["spec"]["clusterIP"], created["spec"]["clusterIPs"]
    assert store.update("services", created)["spec"]["clusterIP"] == "172.21.0.1"
    created["spec"]["clusterIP"] = "172.21.0.99"
    with pytest.raises(ApiError) as err:
        store.update("services", created)
    assert causes(err)["spec.clusterIP"].endswith("field is immutable")


# -- watches and subscriptions -------------------------------------------------------------


def test_watch_from_a_resource_version_sees_later_events_in_order(store: Store) -> None:
    store.create("pods", pod("before"))
    since = store.list("pods")[1]
    created = store.create("pods", pod("a"))
    store.update_status("pods", {**created, "status": {"podIP": "10.0.0.2"}})
    store.delete("pods", "default", "a")
    w = store.watch("pods", "default", resource_version=since)
    events = [w.get(timeout=5) for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events if e] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert events[1] is not None
    assert events[1]["object"]["status"]["podIP"] == "10.0.0.2"
    store.create("pods", pod("live"))  # and it goes on with live events
    live = w.get(timeout=5)
    assert live is not None
    assert live["object"]["metadata"]["name"] == "live"
    w.close()
    assert list(w) == []


def test_watch_without_a_resource_version_starts_with_the_current_objects(store: Store) -> None:
    store.create("pods", pod("a", labels={"app": "web"}))
    store.create("pods", pod("b"))
    w = store.watch("pods", label_selector="app=web")
    first = w.get(timeout=5)
    assert first is not None
    assert (first["type"], first["object"]["metadata"]["name"]) == (
        "ADDED", "a")
    b = store.get("pods", "default", "b")
    b["metadata"]["labels"] = {"app": "web"}
    store.update("pods", b)  # moves into the selection: ADDED to this watch
    b["metadata"]["labels"] = {}
    del b["metadata"]["resourceVersion"]
    store.update("pods", b)  # and out of it: DELETED
    assert [(e["type"], e["object"]["metadata"]["name"])
            for e in (w.get(timeout=5), w.get(timeout=5)) if e] == [("ADDED", "b"),
                                                                   ("DELETED", "b")]
    w.close()


def test_watch_iteration_blocks_until_an_event_and_ends_on_close() -> None:
    store = Store()
    w = store.watch("pods", resource_version=store.list("pods")[1])
    seen: list[str] = []

    def read_two() -> None:
        for event in w:
            seen.append(event["object"]["metadata"]["name"])
            if len(seen) == 2:
                return

    reader = threading.Thread(target=read_two)
    reader.start()
    store.create("pods", pod("a"))
    store.create("pods", pod("b"))
    reader.join(timeout=5)
    assert seen == ["a", "b"]
    blocked = threading.Thread(target=lambda: seen.extend(
        e["object"]["metadata"]["name"] for e in w))
    blocked.start()
    w.close()
    blocked.join(timeout=5)
    assert not blocked.is_alive()
    assert seen == ["a", "b"]


def test_too_old_resource_version_is_gone() -> None:
    store = Store(history=3)
    first = store.create("pods", pod("a"))["metadata"]["resourceVersion"]
    for name in ("b", "c", "d", "e"):
        store.create("pods", pod(name))
    with pytest.raises(ApiError) as err:
        store.watch("pods", resource_version=first)
    assert (err.value.code, err.value.reason) == (410, "Expired")
    recent = store.watch("pods", resource_version=store.list("pods")[1])
    recent.close()


def test_subscribers_see_every_change_in_order_and_may_write(store: Store) -> None:
    seen: list[tuple[str, str, str]] = []

    def on_change(kind: str, resource: str, obj: dict[str, Any]) -> None:
        seen.append((kind, resource, obj["metadata"]["name"]))
        if resource == "pods" and kind == "ADDED":  # a controller reacting in-process
            store.create("services", service(obj["metadata"]["name"]))

    store.subscribe(on_change)
    store.create("pods", pod("a"))
    store.delete("pods", "default", "a")
    assert seen == [("ADDED", "pods", "a"), ("ADDED", "services", "a"),
                    ("DELETED", "pods", "a")]


def test_subscribers_see_concurrent_writes_in_resource_version_order(store: Store) -> None:
    versions: list[int] = []
    store.subscribe(lambda kind, resource, obj: versions.append(
        int(obj["metadata"]["resourceVersion"])))

    def writer(prefix: str) -> None:
        for i in range(25):
            store.create("pods", pod(f"{prefix}-{i}"))

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(versions) == 100
    assert versions == sorted(versions)
