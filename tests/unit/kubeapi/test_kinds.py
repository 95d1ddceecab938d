"""Adding a kind is one module: the test-only Widget kind (tests/unit/kubeapi/widgets.py),
registered beside the built-in kinds, is served whole by the generic store and server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.registry import Registry
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.widgets import GROUP, KINDS, Widgets, widget
from tests.unit.kubeapi.wire import AS_TABLE, request, table_rows

WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/widgets"


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    srv = KubeApiServer(Store(kinds=KINDS)).start()
    yield srv
    srv.stop()


def test_discovery_lists_the_new_kind(server: KubeApiServer) -> None:
    groups = {g["name"] for g in request(server, "GET", "/apis")[1]["groups"]}
    assert GROUP in groups
    resources = {r["name"]: r for r in request(server, "GET", f"/apis/{GROUP}/v1")[1][
        "resources"]}
    assert resources["widgets"]["kind"] == "Widget"
    assert resources["widgets"]["shortNames"] == ["wd"]
    assert resources["widgets/status"]["verbs"] == ["get", "patch", "update"]
    assert f"apis/{GROUP}/v1" in request(server, "GET", "/openapi/v3")[1]["paths"]


def test_create_get_list_and_table_through_the_server(server: KubeApiServer) -> None:
    code, created = request(server, "POST", WIDGETS, widget("red", color="red"))
    assert code == 201
    assert (created["apiVersion"], created["kind"]) == (f"{GROUP}/v1", "Widget")
    assert created["spec"] == {"color": "red", "size": 1}  # the kind's default
    assert created["status"] == {"phase": "Unpainted"}  # and its initial status
    assert request(server, "POST", WIDGETS, widget("blue", color="blue", size=3))[0] == 201
    assert request(server, "GET", f"{WIDGETS}/red")[1]["metadata"]["uid"] == \
        created["metadata"]["uid"]
    _, blue = request(server, "GET", f"{WIDGETS}?fieldSelector=spec.color%3Dblue")
    assert (blue["kind"], [w["metadata"]["name"] for w in blue["items"]]) == (
        "WidgetList", ["blue"])
    code, status = request(server, "GET", f"{WIDGETS}?fieldSelector=spec.shape%3Dround")
    assert (code, status["message"]) == (400, "field label not supported: spec.shape")
    _, found = request(server, "GET", WIDGETS, headers=AS_TABLE)
    assert [c["name"] for c in found["columnDefinitions"]] == ["Name", "Size", "Color", "Age"]
    assert [(r["Name"], r["Size"], r["Color"]) for r in table_rows(found)] == [
        ("blue", 3, "blue"), ("red", 1, "red")]


def test_validation_patch_and_delete_through_the_server(server: KubeApiServer) -> None:
    code, status = request(server, "POST", WIDGETS, widget("bad", size=-1))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == (f'Widget.{GROUP} "bad" is invalid: spec.size: Invalid '
                                 "value: -1: must be greater than or equal to 0")
    request(server, "POST", WIDGETS, widget("red"))
    code, patched = request(server, "PATCH", f"{WIDGETS}/red", {"spec": {"size": 5}},
                            {"Content-Type": "application/merge-patch+json"})
    assert (code, patched["spec"]["size"], patched["metadata"]["generation"]) == (200, 5, 2)
    assert request(server, "DELETE", f"{WIDGETS}/red")[0] == 200
    assert request(server, "GET", f"{WIDGETS}/red")[0] == 404


def test_watch_with_the_kinds_field_selector() -> None:
    store = Store(kinds=KINDS)
    w = store.watch("widgets", "default", field_selector="spec.color=blue")
    store.create("widgets", widget("red", color="red"))
    store.create("widgets", widget("blue", color="blue"))
    event = w.get(timeout=5)
    assert event is not None
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "blue")
    w.close()


def test_a_namespace_deletion_takes_the_new_kind_with_it() -> None:
    store = Store(kinds=KINDS, namespace_grace=60)
    store.create("namespaces", {"metadata": {"name": "lab"}})
    store.create("widgets", {**widget("red"), "metadata": {"name": "red", "namespace": "lab"}})
    assert store.delete("namespaces", None, "lab")["status"]["phase"] == "Terminating"
    store.delete("widgets", "lab", "red")  # its last object: the namespace goes with it
    assert [n["metadata"]["name"] for n in store.list("namespaces")[0]] == [
        "default", "kube-system"]


def test_the_builtin_registry_does_not_serve_it() -> None:
    with pytest.raises(ApiError) as err:
        Store().create("widgets", widget("red"))
    assert err.value.code == 404


def test_a_registry_refuses_a_kind_twice() -> None:
    with pytest.raises(ValueError, match="widgets"):
        KINDS.extended(Widgets())
    with pytest.raises(ValueError, match="Namespace"):
        Registry([s for s in BUILTIN if not s.scopes_namespaced])
