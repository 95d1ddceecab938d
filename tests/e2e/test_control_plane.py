"""The lab's control plane end to end: manifests from kubectl and the official client bring
up pods with ENI addresses through podlab-cni; a Service spreads connections evenly; a
StatefulSet pod comes back with its IP; the node agents watch their pods; an API restart
loses nothing."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.watch import Watch

from podlab.cni import protocol
from podlab.kubeapi.store import Store
from podlab.lab import Lab
from podlab.lab.kube.controlplane import ControlPlane
from podlab.lab.kube.manifests import LabApi, ManifestError, apply, load_documents
from podlab.lab.kube.manifests import running as all_running
from podlab.lab.kube.probe import probe
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import eventually, podlab
from tests.unit.kubeapi.reflector import Reflector

pytestmark = pytest.mark.root
EXAMPLE = Path(__file__).parents[2] / "examples/web.yaml"
T = TypeVar("T")


def pods(lab: Lab) -> dict[str, dict[str, Any]]:
    return LabApi(lab.state.kubeconfig).pods()


def running(lab: Lab, names: set[str]) -> dict[str, dict[str, Any]] | None:
    """The pods, once all of `names` run."""
    now = pods(lab)
    return now if all_running(now, names) else None


def kubectl(lab: Lab, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed (issue 6 needs it: /usr/bin/kubectl)")
    env = {**os.environ, "HOME": str(lab.state.dir)}  # kubectl's cache stays in the lab
    return subprocess.run([kubectl, "--kubeconfig", lab.state.kubeconfig, *argv], env=env,
                          capture_output=True, text=True, check=check, timeout=60)


def test_kubectl_apply_brings_up_pods_with_eni_addresses(lab: Lab) -> None:
    kubectl(lab, "apply", "-f", str(EXAMPLE))
    up = eventually(lambda: running(lab, {"client", "web-0", "web-1", "web-2"}),
                    what="the example's pods Running")
    assert lab.cloud is not None
    assigned = {ip: e.instance_id for e in lab.cloud.model.all_enis()
                if e.type == "Secondary" for ip in e.ips}
    instance = {n.name: n.instance_id for n in lab.state.nodes}
    for pod in up.values():
        ip, node = pod["status"]["podIP"], pod["spec"]["nodeName"]
        assert assigned.get(ip) == instance[node], f"{ip} is an ENI address of {node}"
    assert {p["spec"]["nodeName"] for p in up.values()} == {"n1", "n2"}, "spread"
    wide = kubectl(lab, "get", "pods", "-o", "wide").stdout
    for pod in up.values():
        line = next(row for row in wide.splitlines() if row.startswith(pod["metadata"]["name"]))
        assert pod["status"]["podIP"] in line
        assert pod["spec"]["nodeName"] in line
    assert "unchanged" in kubectl(lab, "apply", "-f", str(EXAMPLE)).stdout
    state = {p.name: p.ip for p in lab.state.pods}
    assert state == {n: p["status"]["podIP"] for n, p in up.items()}, "status --json pods"


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_a_service_spreads_connections_evenly(lab_factory: LabFactory, mode: str) -> None:
    lab = lab_factory(service_proxy=mode)
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(EXAMPLE.read_text(), "web.yaml"), "web.yaml")
    eventually(lambda: running(lab, {"client", "web-0", "web-1", "web-2"}), what="Running")
    svc = api.call("GET", "/api/v1/namespaces/default/services/web")
    ip = svc["spec"]["clusterIP"]
    eventually(lambda: len(api.call("GET", "/apis/discovery.k8s.io/v1/namespaces/default/"
                                           "endpointslices/web-podlab")["endpoints"]) == 3,
               what="three endpoints")
    netns = lab.state.pod("default", "client").netns
    answers = collections.Counter(probe(netns, ip, 80, "tcp")[2] for _ in range(300))
    assert set(answers) == {"web-0", "web-1", "web-2"}, answers
    chi2 = sum((n - 100) ** 2 / 100 for n in answers.values())
    assert chi2 < 13.8, f"uneven: {answers} (chi-square {chi2:.1f}, 2 dof, p < 0.001)"
    assert probe(netns, ip, 9000, "udp")[0], "UDP through the Service"


def test_a_statefulset_pod_comes_back_with_its_ip(lab: Lab) -> None:
    """Its address waits for it: pods that start on its node while it is away get others
    (a released address would be the next one handed out)."""
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(EXAMPLE.read_text(), "web.yaml"), "web.yaml")
    before = eventually(lambda: running(lab, {"web-0", "web-1", "web-2"}), what="Running")
    uid = before["web-1"]["metadata"]["uid"]
    api.call("DELETE", "/api/v1/namespaces/default/pods/web-1")
    after = eventually(lambda: (p := running(lab, {"web-1"})) and
                       p["web-1"]["metadata"]["uid"] != uid and p, what="web-1 recreated")
    assert after["web-1"]["status"]["podIP"] == before["web-1"]["status"]["podIP"]

    sts = "/apis/apps/v1/namespaces/default/statefulsets/web"
    api.call("PATCH", sts, {"spec": {"replicas": 1}}, "application/merge-patch+json")
    eventually(lambda: not {"web-1", "web-2"} & set(pods(lab)), what="scaled to 1")
    grabbers = {f"grab-{n}-{i}": before[n]["spec"]["nodeName"]
                for n in ("web-1", "web-2") for i in range(3)}
    for name, node in grabbers.items():
        api.call("POST", "/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "x"}]}})
    grabbed = eventually(lambda: running(lab, set(grabbers)), what="the grabbers Running")
    kept = {before[n]["status"]["podIP"] for n in ("web-1", "web-2")}
    assert not kept & {grabbed[g]["status"]["podIP"] for g in grabbers}, "reserved"
    api.call("PATCH", sts, {"spec": {"replicas": 3}}, "application/merge-patch+json")
    back = eventually(lambda: running(lab, {"web-1", "web-2"}), what="scaled back to 3")
    assert {back[n]["status"]["podIP"] for n in ("web-1", "web-2")} == kept


def test_the_python_client_watch_sees_pod_ips_appear(lab: Lab) -> None:
    v1 = client.CoreV1Api(config.new_client_from_config(  # type: ignore[no-untyped-call]
        lab.state.kubeconfig))
    listed = v1.list_namespaced_pod("default").metadata
    assert listed is not None
    v1.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="solo"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="agnhost")])))
    seen = None
    for event in Watch().stream(v1.list_namespaced_pod, "default",
                                      resource_version=listed.resource_version, timeout_seconds=60):
        if event["object"].status and event["object"].status.pod_ip:
            seen = event["object"]
            break
    assert seen is not None
    assert seen.metadata.name == "solo"
    assert seen.status.phase == "Running"
    assert seen.spec.node_name in ("n1", "n2")


def test_an_invalid_manifest_applies_nothing(lab: Lab, tmp_path: Path) -> None:
    api = LabApi(lab.state.kubeconfig)
    text = EXAMPLE.read_text() + """---
apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  containers: [{name: main, image: x, ports: [{containerPort: 70000}]}]
"""
    with pytest.raises(ManifestError, match=r"spec\.containers\[0\]\.ports\[0\]\.containerPort"):
        apply(api, load_documents(text, "bad.yaml"), "bad.yaml")
    assert pods(lab) == {}, "one bad document: nothing applied"
    with pytest.raises(ManifestError, match="unknown kind DaemonSet"):
        apply(api, load_documents("apiVersion: apps/v1\nkind: DaemonSet\n"
                                  "metadata: {name: d}\n", "d.yaml"), "d.yaml")
    (tmp_path / "bad.yaml").write_text(text)
    proc = kubectl(lab, "apply", "-f", str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "containerPort" in proc.stderr


def test_the_agent_releases_the_ip_of_a_pod_deleted_behind_its_runtime(lab: Lab) -> None:
    """The node runtime misses the delete (as a kubelet that is down would): the agent's
    own watch of its node's pods gives the address back."""
    eventually(lambda: "kube_synced" in agent_events(lab, "n1"), what="the agent's watch")
    api = LabApi(lab.state.kubeconfig)
    api.call("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "x"}]}})
    ip = eventually(lambda: (running(lab, {"lost"}) or {}).get("lost", {}).get(
        "status", {}).get("podIP"), what="lost Running")
    assert lab.control_plane is not None
    lab.control_plane.runtimes["n1"].queue.stop()
    api.call("DELETE", "/api/v1/namespaces/default/pods/lost")
    socket = lab.state.node("n1").agent_socket

    def released() -> bool:
        info = protocol.call(socket, "info")
        return not any(a["address"] == ip and a["state"] == "used"
                       for e in info["enis"] for a in e["ips"])

    eventually(released, what=f"the agent released {ip}")
    assert "kube_pod_deleted" in agent_events(lab, "n1")


def agent_events(lab: Lab, node: str) -> list[str]:
    log = (lab.state.dir / "nodes" / node / "agent.log").read_text()
    return [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]


def test_the_scheduler_follows_selectors_and_eni_capacity(lab: Lab) -> None:
    api = LabApi(lab.state.kubeconfig)
    zone = lab.state.node("n2").zone
    capacity = sum(int(n["status"]["allocatable"]["pods"])
                   for n in api.call("GET", "/api/v1/nodes")["items"])

    def pod(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "main", "image": "x"}], **spec}}

    apply(api, [pod("picky", nodeSelector={"topology.kubernetes.io/zone": zone}),
                *(pod(f"fill-{i}") for i in range(capacity - 1)), pod("one-too-many")], "t")
    names = {"picky", *(f"fill-{i}" for i in range(capacity - 1))}
    up = eventually(lambda: running(lab, names), what=f"{capacity} pods Running")
    assert up["picky"]["spec"]["nodeName"] == "n2"
    extra = eventually(lambda: (c := pods(lab)["one-too-many"]["status"].get("conditions"))
                       and c[0].get("reason") == "Unschedulable" and c[0], what="Unschedulable")
    assert "too many pods (ENI capacity)" in extra["message"]
    assert not pods(lab)["one-too-many"]["spec"].get("nodeName")


def test_services_work_from_exclusive_eni_pods(lab_factory: LabFactory) -> None:
    """Their packets leave through the ENI, past the node: veth1 takes the Service CIDR
    into the node's stack, where kube-proxy's rules apply (eBPF mode, the default, is in
    test_ebpf_services)."""
    lab = lab_factory(agent_settings={"eni_mode": "exclusive", "min_pool_size": 0},
                      service_proxy="iptables")
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(EXAMPLE.read_text(), "web.yaml"), "web.yaml")
    up = eventually(lambda: running(lab, {"client", "web-0", "web-1", "web-2"}),
                    what="exclusive-ENI pods Running")
    assert lab.cloud is not None
    primaries = {e.primary_ip for e in lab.cloud.model.all_enis() if e.type == "Secondary"}
    assert {p["status"]["podIP"] for p in up.values()} <= primaries, "each pod owns an ENI"
    ip = api.call("GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
    netns = lab.state.pod("default", "client").netns
    eventually(lambda: len(api.call("GET", "/apis/discovery.k8s.io/v1/namespaces/default/"
                                           "endpointslices/web-podlab")["endpoints"]) == 3,
               what="three endpoints")
    answers = {probe(netns, ip, 80, "tcp")[2] for _ in range(30)}
    assert answers == {"web-0", "web-1", "web-2"}
    assert probe(netns, up["web-0"]["status"]["podIP"], 8080, "tcp")[2] == "web-0", \
        "pod to pod still goes through the ENIs"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: podlab/workload
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def test_a_deployment_rolls_out_serves_its_service_and_replaces_lost_pods(
        lab: Lab, tmp_path: Path) -> None:
    manifest = tmp_path / "api.yaml"
    manifest.write_text(DEPLOYMENT)
    applied = podlab("apply", "--name", lab.name, "-f", str(manifest), "--wait")
    assert applied.returncode == 0, applied.stderr
    assert "deployment/api created" in applied.stdout
    assert kubectl(lab, "rollout", "status", "deployment/api", "--timeout=60s").returncode == 0
    assert "2/2" in kubectl(lab, "get", "deployment", "api").stdout
    api = LabApi(lab.state.kubeconfig)
    first = {n: p for n, p in pods(lab).items() if n.startswith("api-")}
    assert len(first) == 2
    assert all(p["status"].get("podIP") for p in first.values())

    ip = api.call("GET", "/api/v1/namespaces/default/services/api")["spec"]["clusterIP"]
    one, other = sorted(first)
    netns = lab.state.pod("default", one).netns
    eventually(lambda: {probe(netns, ip, 80, "tcp")[2] for _ in range(20)} == set(first),
               what="both replicas answer through the Service")

    def replaced() -> dict[str, dict[str, Any]] | None:
        up = {n: p for n, p in pods(lab).items() if n.startswith("api-")}
        return up if len(up) == 2 and other not in up and all_running(up, up) else None

    kubectl(lab, "delete", "pod", other)
    assert one in eventually(replaced, what="a replacement Running, under a new name")


def test_an_api_restart_loses_no_object_and_no_watch_event(lab: Lab) -> None:
    """`restart_api` under a client's watch, the agents' watches and the controllers: every
    object keeps its uid, resourceVersion and cluster IP; the client's watch resumes with
    every change once, in order; the agents and controllers go on working."""
    assert lab.control_plane is not None
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(DEPLOYMENT, "api.yaml"), "api.yaml")
    eventually(lambda: (up := {n: p for n, p in pods(lab).items() if n.startswith("api-")})
               and len(up) == 2 and all_running(up, up), what="the Deployment's pods")
    eventually(lambda: "kube_synced" in agent_events(lab, "n1"), what="the agent's watch")
    watcher = Reflector(client.CoreV1Api(config.new_client_from_config(  # type: ignore[no-untyped-call]
        lab.state.kubeconfig))).start()
    since = watcher.version
    kinds = ("pods", "services", "deployments", "nodes", "endpoints", "namespaces")
    store = lab.control_plane.store
    before = {r: store.list(r)[0] for r in kinds}
    try:
        lab.control_plane.restart_api()
        after = {r: {(o["metadata"].get("namespace"), o["metadata"]["name"]): o
                     for o in store.list(r)[0]} for r in kinds}
        for r, objects in before.items():  # the controllers may have written meanwhile
            for old in objects:
                new = after[r][(old["metadata"].get("namespace"), old["metadata"]["name"])]
                assert new["metadata"]["uid"] == old["metadata"]["uid"]
                assert new == old or int(new["metadata"]["resourceVersion"]) > int(
                    old["metadata"]["resourceVersion"]), "read back as it was, or newer"
        api.call("POST", "/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after"},
            "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "x"}]}})
        ip = eventually(lambda: (running(lab, {"after"}) or {}).get("after", {}).get(
            "status", {}).get("podIP"), what="a pod made after the restart Running")
        victim = sorted(n for n in pods(lab) if n.startswith("api-"))[0]
        api.call("DELETE", f"/api/v1/namespaces/default/pods/{victim}")
        eventually(lambda: (up := {n: p for n, p in pods(lab).items() if n.startswith("api-")})
                   and len(up) == 2 and victim not in up and all_running(up, up),
                   what="the Deployment controller replacing a pod")
        # the agent's own watch, through the restarted VPC server, releases an address
        lab.control_plane.runtimes["n1"].queue.stop()
        api.call("DELETE", "/api/v1/namespaces/default/pods/after")
        socket = lab.state.node("n1").agent_socket
        eventually(lambda: not any(a["address"] == ip and a["state"] == "used"
                                   for e in protocol.call(socket, "info")["enis"]
                                   for a in e["ips"]), what=f"the agent released {ip}")
        replay = store.watch("pods", "default", resource_version=since)
        truth = []
        while (event := replay.get(timeout=0.5)) is not None:
            meta = event["object"]["metadata"]
            truth.append((event["type"], meta["name"], meta["resourceVersion"]))
        replay.close()
        watcher.wait_for(truth[-1][2])
    finally:
        watcher.stop()
    assert watcher.events[:len(truth)] == truth, "every change once, in order"
    assert watcher.relists == 0
    ip_after = api.call("GET", "/api/v1/namespaces/default/services/api")["spec"]["clusterIP"]
    assert ip_after == next(s for s in before["services"]
                            if s["metadata"]["name"] == "api")["spec"]["clusterIP"]


def test_a_control_plane_started_on_an_existing_store_does_the_work_it_holds(
        lab: Lab) -> None:
    """What a resumed lab's control plane finds: objects written while no controller ran
    (here, into the file while the control plane is stopped) are worked on, the nodes
    re-register, and a Service keeps its cluster IP."""
    old = lab.control_plane
    assert old is not None
    api = LabApi(lab.state.kubeconfig)
    web = api.call("POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}})
    old.stop()
    offline = Store(old.store_path)
    documents = load_documents(DEPLOYMENT, "api.yaml")
    offline.create("deployments", documents[0])
    offline.close()
    again = ControlPlane(lab, lab.service_proxy, lab.api_access).start()
    api = LabApi(lab.state.kubeconfig)  # served at a new port: the kubeconfig says which

    def deployed() -> dict[str, dict[str, Any]] | None:
        up = {n: p for n, p in pods(lab).items() if n.startswith("api-")}
        return up if len(up) == 2 and all_running(up, up) else None

    try:
        up = eventually(deployed, what="the stored Deployment's pods")
        assert {p["spec"]["nodeName"] for p in up.values()} <= {"n1", "n2"}
        fresh = api.call("POST", "/api/v1/namespaces/default/services", documents[1])
        assert fresh["spec"]["clusterIP"] != web["spec"]["clusterIP"]
        assert api.call("GET", "/api/v1/namespaces/default/services/web")["spec"][
            "clusterIP"] == web["spec"]["clusterIP"]
        eventually(lambda: len(((api.call("GET", "/api/v1/namespaces/default/endpoints/web")
                                 .get("subsets") or [{}])[0]).get("addresses") or []) == 2,
                   what="endpoints of a Service stored before the Deployment's pods")
    finally:
        again.stop()
