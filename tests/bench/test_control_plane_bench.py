"""The control plane under a burst: 3 nodes, 60 pods and 20 Services of 3 endpoints each,
applied at once. Measures the time until every pod is Running and every Service answers a
probe; the reference, measured in the same lab, is the node runtimes' irreducible work
done serially by hand: one CNI ADD per pod. Goal: under 30 s on this machine. Prints
figures; asserts no time.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from podlab.fakecloud import Topology, default_topology
from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi, apply
from podlab.lab.kube.probe import probe
from tests.e2e.helpers import cni

pytestmark = pytest.mark.root
SERVICES, PER_SERVICE = 20, 3
GOAL = 30.0


def topology() -> Topology:
    data = default_topology(nodes=3).to_dict()
    for node in data["nodes"]:
        node["instance_type"] = "ecs.g7.xlarge"  # 45 pods a node: room for the burst
    return Topology.from_dict(data)


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for s in range(SERVICES):
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{s}"},
                     "spec": {"selector": {"app": f"a{s}"}, "ports": [{"port": 80,
                                                                      "targetPort": 8080}]}})
        docs += [{"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"p{s}-{i}", "labels": {"app": f"a{s}"}},
            "spec": {"containers": [{"name": "web", "image": "agnhost",
                                     "ports": [{"containerPort": 8080}]}]}}
            for i in range(PER_SERVICE)]
    return docs


def test_sixty_pods_and_twenty_services_at_once(lab_factory: Any) -> None:
    lab: Lab = lab_factory(topology())
    reference = reference_adds(lab, SERVICES * PER_SERVICE)
    api = LabApi(lab.state.kubeconfig)
    started = time.monotonic()
    apply(api, manifests(), "burst")
    applied = time.monotonic() - started
    while not all_running(api):
        time.sleep(0.1)  # polling the API for the phases
    running = time.monotonic() - started
    client = lab.state.pods[0].netns
    pending = {s: api.call("GET", f"/api/v1/namespaces/default/services/svc{s}")["spec"][
        "clusterIP"] for s in range(SERVICES)}
    while pending:
        pending = {s: ip for s, ip in pending.items() if not probe(client, ip, 80, "tcp")[0]}
    answering = time.monotonic() - started
    print(f"\napplied {len(manifests())} objects in {applied:.2f}s; all 60 pods Running at "
          f"{running:.2f}s; every Service answering at {answering:.2f}s (goal < {GOAL:.0f}s)")
    print(f"reference: {SERVICES * PER_SERVICE} CNI ADDs one by one took {reference:.2f}s; "
          f"ratio control plane / reference: {answering / reference:.2f}x")
    assert not pending


def reference_adds(lab: Lab, count: int) -> float:
    """ADD then DEL of `count` pods straight through podlab-cni, timing the ADDs."""
    spent = 0.0
    for i in range(count):
        node = lab.state.nodes[i % len(lab.state.nodes)].name
        lab.add_pod("ref", f"r{i}", node)
        started = time.monotonic()
        rc, result = cni(lab, "ADD", f"ref/r{i}", node)
        spent += time.monotonic() - started
        assert rc == 0, result
        assert cni(lab, "DEL", f"ref/r{i}", node)[0] == 0
        lab.delete_pod("ref", f"r{i}")
    return spent


def all_running(api: LabApi) -> bool:
    pods = api.call("GET", "/api/v1/namespaces/default/pods")["items"]
    return len(pods) == SERVICES * PER_SERVICE and all(
        (p.get("status") or {}).get("phase") == "Running" for p in pods)
