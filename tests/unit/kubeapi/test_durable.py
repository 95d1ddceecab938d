"""The store on disk: everything read back from its file as it was, watches resumed across
a reopen and across an API server restart, compaction that keeps the file small."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import ApiError, Store
from tests.unit.kubeapi.objects import deployment, pod, service

kubernetes = pytest.importorskip("kubernetes", reason="the official client is not installed")
from kubernetes import client  # noqa: E402

from tests.unit.kubeapi.reflector import Reflector  # noqa: E402

CIDR = "172.21.0.0/20"
RESOURCES = ("namespaces", "pods", "services", "deployments", "nodes", "endpoints")


def everything(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {r: store.list(r)[0] for r in RESOURCES}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "kube.db"


def test_a_reopened_store_has_every_object_with_its_version_and_uid(path: Path) -> None:
    store = Store(path, service_cidr=CIDR)
    store.create("namespaces", {"metadata": {"name": "team"}})
    store.create("pods", pod("a", "team", labels={"app": "a"}))
    web = store.create("services", service("web"))
    store.create("services", service("fixed", clusterIP="172.21.0.9"))
    store.create("deployments", deployment("web", replicas=3))
    gone = store.create("pods", pod("gone"))
    patched = store.patch("pods", "team", "a", {"metadata": {"labels": {"v": "2"}}}, "merge")
    store.update_status("pods", {**patched, "status": {"phase": "Running",
                                                       "podIP": "10.0.0.7"}})
    store.delete("pods", "default", "gone")
    before, version = everything(store), store.list("pods")[1]
    store.close()

    again = Store(path, service_cidr=CIDR)
    assert everything(again) == before, "every object, resourceVersion and uid as it was"
    assert again.list("pods")[1] == version
    with pytest.raises(ApiError):
        again.get("pods", "default", "gone")
    newer = again.create("pods", pod("gone"))
    assert int(newer["metadata"]["resourceVersion"]) == int(version) + 1, "the counter goes on"
    assert newer["metadata"]["uid"] != gone["metadata"]["uid"]
    fresh = again.create("services", service("next"))["spec"]["clusterIP"]
    assert fresh not in (web["spec"]["clusterIP"], "172.21.0.9"), \
        "the allocator knows the stored Services' cluster IPs"
    with pytest.raises(ApiError) as taken:
        again.create("services", service("clash", clusterIP="172.21.0.9"))
    assert taken.value.code == 422
    again.close()


KILLED_WRITER = """
import os, signal, sys
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.objects import pod
store = Store(sys.argv[1])
for i in range(50):
    store.create("pods", pod(f"p{i}"))
print(store.list("pods")[1], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_answered_write_survives_its_process_being_killed(path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], check=False,
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[3])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    again = Store(path)
    pods, version = again.list("pods")
    assert [p["metadata"]["name"] for p in pods] == sorted(f"p{i}" for i in range(50))
    assert version == proc.stdout.strip()
    again.close()


def test_a_watch_resumes_from_its_version_in_a_reopened_store(path: Path) -> None:
    store = Store(path)
    since = store.create("pods", pod("a", labels={"app": "web"}))["metadata"]["resourceVersion"]
    store.patch("pods", "default", "a", {"metadata": {"labels": {"app": "db"}}}, "merge")
    store.create("pods", pod("b", labels={"app": "web"}))
    store.delete("pods", "default", "b")
    store.close()

    again = Store(path)
    w = again.watch("pods", resource_version=since, label_selector="app=web")
    events = [w.get(timeout=5) for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events if e] == [
        ("DELETED", "a"), ("ADDED", "b"), ("DELETED", "b")], \
        "a's label change took it out of the selection, as the old object tells"
    w.close()
    again.close()


def test_reopen_ends_watches_and_keeps_the_store_usable(path: Path) -> None:
    store = Store(path)
    w = store.watch("pods", resource_version=store.list("pods")[1])
    store.create("pods", pod("a"))
    store.reopen()
    assert w.get(timeout=0.1) is None
    assert w.closed, "a watch ends with the server that served it"
    assert store.get("pods", "default", "a")["metadata"]["name"] == "a"
    store.create("pods", pod("b"))
    store.close()
    with pytest.raises(ApiError) as closed:
        store.create("pods", pod("c"))
    assert closed.value.code == 503
    with pytest.raises(ApiError) as closed:
        store.watch("pods", resource_version="1")
    assert closed.value.code == 503, "a request in flight when its server stopped"
    with pytest.raises(ValueError, match="in memory"):
        Store().reopen()


def test_compaction_keeps_the_file_small_and_older_versions_are_gone(path: Path) -> None:
    store = Store(path, history=50)
    store.create("pods", pod("a", labels={"app": "web"}))
    store.create("pods", pod("still"))
    for i in range(600):
        store.patch("pods", "default", "a", {"metadata": {"labels": {
            "app": "web" if i % 2 else "db", "i": str(i)}}}, "merge")
        if i % 3 == 0:
            store.create("pods", pod(f"brief{i}"))
            store.delete("pods", "default", f"brief{i}")
    last = int(store.list("pods")[1])
    with pytest.raises(ApiError) as gone:
        store.watch("pods", resource_version=str(last - 60))
    assert (gone.value.code, gone.value.reason) == (410, "Expired")

    since = str(last - 50)
    w = store.watch("pods", resource_version=since, label_selector="app=web")
    seen = []
    while (event := w.get(timeout=0.2)) is not None:
        seen.append((event["type"], event["object"]["metadata"]["name"]))
    w.close()
    flips = [t for t, name in seen if name == "a"]
    assert set(flips) == {"ADDED", "DELETED"}, \
        "every change kept has the object it replaced: moves in and out of the selection"
    assert all(a != b for a, b in itertools.pairwise(flips))
    store.close()

    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT count(*) FROM kine").fetchone()[0]
    assert rows <= 2 + 50 + 50 // 10 + 2, f"{rows} rows for 2 objects and 55 revisions"
    again = Store(path, history=50)
    assert [p["metadata"]["name"] for p in again.list("pods")[0]] == ["a", "still"]
    assert again.list("pods")[1] == str(last)
    again.close()


def test_a_terminating_namespace_ends_after_a_reopen(path: Path) -> None:
    store = Store(path, namespace_grace=0.2)
    store.create("namespaces", {"metadata": {"name": "team"}})
    store.create("pods", pod("a", "team"))
    store.delete("namespaces", None, "team")
    store.close()  # before its grace period ran out
    again = Store(path, namespace_grace=0.2)
    assert again.get("namespaces", None, "team")["status"]["phase"] == "Terminating"
    deadline = time.monotonic() + 10
    while "team" in {n["metadata"]["name"] for n in again.list("namespaces")[0]}:
        assert time.monotonic() < deadline, "the namespace never ended"
        time.sleep(0.05)  # polling for the grace timer's work
    assert again.list("pods", "team")[0] == []
    again.close()


def test_a_second_api_server_cannot_open_a_store_in_use(path: Path) -> None:
    store = Store(path)
    with pytest.raises(OSError, match="another API server"):
        Store(path)
    store.close()
    Store(path).close()


# -- an API server restarted under a client's watch -----------------------------------------


def reflector(server: KubeApiServer) -> Reflector:
    config = client.Configuration()
    config.host = server.url
    return Reflector(client.CoreV1Api(client.ApiClient(config))).start()


def restart(server: KubeApiServer, store: Store, while_down: Callable[[], None]
            ) -> KubeApiServer:
    """Stop the server, write while it is down, reopen the store, serve at the same port."""
    server.stop()
    while_down()
    store.reopen()
    return KubeApiServer(store, "127.0.0.1", server.port).start()


def test_a_client_watch_across_an_api_restart_loses_no_event(path: Path) -> None:
    store = Store(path)
    server = KubeApiServer(store).start()
    watcher = reflector(server)
    made: list[tuple[str, str, str]] = []

    def write(kind: str, name: str) -> None:
        if kind == "ADDED":
            obj = store.create("pods", pod(name))
        elif kind == "MODIFIED":
            obj = store.patch("pods", "default", name, {"metadata": {"labels": {"x": "1"}}},
                              "merge")
        else:
            obj = store.delete("pods", "default", name)
        made.append((kind, name, obj["metadata"]["resourceVersion"]))

    def while_down() -> None:
        write("ADDED", "c")
        write("ADDED", "d")
        write("DELETED", "a")

    try:
        write("ADDED", "a")
        write("ADDED", "b")
        watcher.wait_for(made[-1][2])
        server = restart(server, store, while_down)
        write("MODIFIED", "b")
        write("ADDED", "e")
        watcher.wait_for(made[-1][2])
    finally:
        watcher.stop()
        server.stop()
        store.close()
    assert watcher.events == made, "every change once, in order, across the restart"
    assert watcher.relists == 0
    assert watcher.names == {"b", "c", "d", "e"}


def test_a_client_too_far_behind_after_a_restart_relists(path: Path) -> None:
    store = Store(path, history=5)
    server = KubeApiServer(store).start()
    watcher = reflector(server)

    def many() -> None:
        for i in range(20):  # more than the history keeps while the client is away
            store.create("pods", pod(f"p{i}"))

    try:
        store.create("pods", pod("first"))
        watcher.wait_for(store.list("pods")[1])
        server = restart(server, store, many)
        store.delete("pods", "default", "first")
        watcher.wait_for(store.list("pods")[1])
    finally:
        watcher.stop()
        server.stop()
        store.close()
    assert watcher.relists >= 1, "410 Gone, then a list"
    assert watcher.names == {f"p{i}" for i in range(20)}
