"""kubectl 1.32 against the in-memory API: apply, get (server-side tables), delete, and
validation errors, with a kubeconfig from `write_kubeconfig`."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed on this machine")

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: lab
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: lab
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
      name: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: lab
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: lab
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: postgres
        image: postgres:16
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
  namespace: lab
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector: {}
    ports:
    - port: 80
"""

INVALID = """\
apiVersion: v1
kind: Pod
metadata:
  name: broken
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 70000
"""


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig, self.home = kubeconfig, home

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
            text=True, timeout=30, env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
            check=False)
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done


@pytest.fixture
def kubectl(store: Store, tmp_path: Path) -> Iterator[Kubectl]:
    server = KubeApiServer(store).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    yield Kubectl(kubeconfig, tmp_path)
    server.stop()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(MANIFEST)
    return path


def table(output: str) -> list[dict[str, str]]:
    """kubectl's column output as rows keyed by header (columns are 2+ spaces apart)."""
    lines = output.splitlines()
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    bounds = [*starts[1:], None]
    return [{header[a:b].strip(): line[a:b].strip() for a, b in zip(starts, bounds, strict=True)}
            for line in lines[1:]]


def test_apply_twice_then_delete(kubectl: Kubectl, manifest: Path, store: Store) -> None:
    first = kubectl("apply", "-f", str(manifest)).stdout
    for created in ("namespace/lab created", "pod/web created", "service/web created",
                    "statefulset.apps/db created",
                    "networkpolicy.networking.k8s.io/web-allow created"):
        assert created in first
    assert store.get("pods", "lab", "web")["spec"]["containers"][0]["ports"][0][
        "containerPort"] == 80
    again = kubectl("apply", "-f", str(manifest)).stdout.splitlines()
    assert len(again) == 5
    assert all(line.endswith((" unchanged", " configured")) for line in again), again
    assert "pod/web unchanged" in again
    changed = manifest.read_text().replace("nginx:1.27", "nginx:1.28")
    manifest.write_text(changed)
    assert "pod/web configured" in kubectl("apply", "-f", str(manifest)).stdout
    assert store.get("pods", "lab", "web")["spec"]["containers"][0]["image"] == "nginx:1.28"
    deleted = kubectl("delete", "-f", str(manifest)).stdout
    assert 'pod "web" deleted' in deleted
    assert 'namespace "lab" deleted' in deleted
    assert [n["metadata"]["name"] for n in store.list("namespaces")[0]] == [
        "default", "kube-system"]


def test_get_shows_server_side_columns(kubectl: Kubectl, manifest: Path, store: Store) -> None:
    kubectl("apply", "-f", str(manifest))
    pod = store.get("pods", "lab", "web")
    pod["spec"]["nodeName"] = "node-a"
    pod = store.update("pods", pod)
    store.update_status("pods", {**pod, "status": {
        "phase": "Running", "podIP": "10.0.1.5",
        "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 0}]}})
    [row] = table(kubectl("get", "pods", "-n", "lab", "-o", "wide").stdout)
    assert (row["NAME"], row["READY"], row["STATUS"], row["IP"], row["NODE"]) == (
        "web", "1/1", "Running", "10.0.1.5", "node-a")
    [svc] = table(kubectl("get", "svc", "-n", "lab").stdout)
    assert (svc["NAME"], svc["TYPE"], svc["CLUSTER-IP"], svc["PORT(S)"]) == (
        "web", "ClusterIP", store.get("services", "lab", "web")["spec"]["clusterIP"], "80/TCP")
    [netpol] = table(kubectl("get", "networkpolicy", "-n", "lab").stdout)
    assert (netpol["NAME"], netpol["POD-SELECTOR"]) == ("web-allow", "app=web")
    [sts] = table(kubectl("get", "sts", "-n", "lab").stdout)
    assert (sts["NAME"], sts["READY"]) == ("db", "0/2")
    as_yaml = kubectl("get", "-o", "yaml", "-n", "lab", "pod", "web").stdout
    assert "podIP: 10.0.1.5" in as_yaml
    assert "kubectl.kubernetes.io/last-applied-configuration" in as_yaml
    everywhere = table(kubectl("get", "pods", "-A", "-l", "app=web").stdout)
    assert [(r["NAMESPACE"], r["NAME"]) for r in everywhere] == [("lab", "web")]


def test_invalid_manifest_is_refused_with_the_field_path(kubectl: Kubectl,
                                                         tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    done = kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert "spec.containers[0].ports[0].containerPort" in done.stderr
    assert "70000" in done.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(INVALID.replace("containerPort: 70000", "containerPort: 80").replace(
        "  name: broken", "  name: broken\n  lables: {app: web}"))
    done = kubectl("apply", "-f", str(typo), check=False)
    assert done.returncode != 0  # kubectl leaves strict field validation to the server
    assert 'unknown field "metadata.lables"' in done.stderr
    missing = kubectl("get", "pod", "nope", check=False)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr
