"""The agent's policy watch against the lab's API server (in process, no root): what it
hands the compiler, and that a burst of events costs a compile or two, not one each."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from podlab.cni.policywatch import Compiled, PolicyWatch, pod_names
from podlab.datapath.bpf.policy_model import PolicyState
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.e2e.helpers import eventually
from tests.unit.kubeapi.objects import pod

Obj = dict[str, Any]


def deny_all(name: str) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


class Recorder:
    """Compiler and writer in one: what each compile was given, and the writes, which
    wait while `hold` is clear."""

    def __init__(self) -> None:
        self.inputs: list[tuple[list[str], list[str], list[str], str]] = []
        self.written: list[Compiled] = []
        self.hold = threading.Event()
        self.hold.set()

    def compile(self, pods: Iterable[Obj], namespaces: Iterable[Obj],
                policies: Iterable[Obj], *, node: str, host_ips: Iterable[str]) -> PolicyState:
        self.inputs.append(([p["metadata"]["name"] for p in pods],
                            [n["metadata"]["name"] for n in namespaces],
                            sorted(p["metadata"]["name"] for p in policies), node))
        return PolicyState()

    def write(self, compiled: Compiled) -> None:
        self.hold.wait(30)
        self.written.append(compiled)

    def policies(self) -> list[str]:
        return self.inputs[-1][2] if self.inputs else []


@pytest.fixture
def api() -> Iterator[tuple[Store, KubeApiServer]]:
    store = Store()
    server = KubeApiServer(store).start()
    yield store, server
    server.stop()


def watching(server: KubeApiServer, recorder: Recorder) -> PolicyWatch:
    return PolicyWatch(server.url, "n1", lambda: ["192.168.0.10"], recorder, lambda *_, **__: None,
                       compiler=recorder.compile).start()


def test_the_first_compile_has_all_three_lists_and_an_event_is_timed(
        api: tuple[Store, KubeApiServer]) -> None:
    store, server = api
    store.create("pods", pod("web"))
    recorder = Recorder()
    watch = watching(server, recorder)
    try:
        assert watch.synced.wait(30)
        pods, namespaces, policies, node = recorder.inputs[0]
        assert (pods, policies, node) == (["web"], [], "n1")
        assert "default" in namespaces
        assert recorder.written[0].since == (), "a list is no event to time"
        listed = recorder.written[0].version
        assert listed > 0, "a list's compile carries the list's resourceVersion"
        made = store.create("networkpolicies", deny_all("deny"))
        eventually(lambda: recorder.policies() == ["deny"], 30, "the policy compiled")
        assert len(eventually(lambda: recorder.written[-1].since, 30, "timed")) == 1
        assert recorder.written[-1].version == int(made["metadata"]["resourceVersion"]), \
            "the write that includes the policy says so by its resourceVersion"
        gone = store.delete("networkpolicies", "default", "deny")
        eventually(lambda: recorder.written[-1].version ==
                   int(gone["metadata"]["resourceVersion"]), 30, "the deletion's version")
    finally:
        watch.stop()


def test_a_burst_of_events_coalesces_into_few_compiles(
        api: tuple[Store, KubeApiServer]) -> None:
    store, server = api
    recorder = Recorder()
    watch = watching(server, recorder)
    try:
        assert watch.synced.wait(30)
        recorder.hold.clear()  # the writer is busy while the burst arrives
        store.create("networkpolicies", deny_all("p0"))
        eventually(lambda: len(recorder.inputs) == 2, 30, "the first event's compile began")
        for i in range(1, 20):
            store.create("networkpolicies", deny_all(f"p{i}"))
        eventually(lambda: len(watch._objects["networkpolicies"]) == 20, 30,
                   "the watch has seen all twenty")
        recorder.hold.set()
        want = sorted(f"p{i}" for i in range(20))
        eventually(lambda: recorder.policies() == want, 30, "all twenty compiled")
        assert len(recorder.inputs) == 3, "one compile for the first, one for the rest"
        eventually(lambda: len(recorder.written) == 3, 30, "written")
        assert sum(len(c.since) for c in recorder.written) == 20, "every event timed once"
    finally:
        watch.stop()


def test_pod_names_by_address_skip_host_network_and_finished_pods() -> None:
    pods: list[Obj] = [
        {"metadata": {"namespace": "x", "name": "a"},
         "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}},
        {"metadata": {"namespace": "x", "name": "old"},
         "status": {"podIP": "10.0.0.2", "phase": "Succeeded"}},
        {"metadata": {"namespace": "x", "name": "b"}, "status": {"podIP": "10.0.0.2"}},
        {"metadata": {"namespace": "kube-system", "name": "node-agent"},
         "spec": {"hostNetwork": True}, "status": {"podIP": "192.168.0.10"}},
        {"metadata": {"namespace": "x", "name": "pending"}, "status": {}}]
    assert pod_names(pods) == {"10.0.0.1": "x/a", "10.0.0.2": "x/b"}
