"""kubectl 1.32 against the in-memory API: apply, get (server-side tables), describe,
delete, and validation errors, with a kubeconfig from `write_kubeconfig`."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.widgets import KINDS

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


@contextlib.contextmanager
def serving(store: Store, home: Path) -> Iterator[Kubectl]:
    server = KubeApiServer(store).start()
    try:
        yield Kubectl(write_kubeconfig(home / "kubeconfig", server.url), home)
    finally:
        server.stop()


@pytest.fixture
def kubectl(store: Store, tmp_path: Path) -> Iterator[Kubectl]:
    with serving(store, tmp_path) as run:
        yield run


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


BAD_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
spec:
  podSelector: {}
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}
      podSelector: {}
    ports:
    - {port: 8080, endPort: 80}
"""


def test_network_policies_get_describe_and_refusals(kubectl: Kubectl, manifest: Path,
                                                    tmp_path: Path) -> None:
    kubectl("apply", "-f", str(manifest))
    listed = kubectl("get", "networkpolicy", "-n", "lab").stdout
    assert listed.split("\n", 1)[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert [(r["NAME"], r["POD-SELECTOR"]) for r in table(listed)] == [("web-allow", "app=web")]
    described = kubectl("describe", "networkpolicy", "web-allow", "-n", "lab").stdout
    for line in ("PodSelector:     app=web", "To Port: 80/TCP", "Policy Types: Ingress"):
        assert line in described  # the defaults (protocol, policy types) as kubectl reads them
    assert MANIFEST.endswith("    - port: 80\n")  # the policy's port, last
    manifest.write_text(MANIFEST + "      endPort: 90\n")
    assert "networkpolicy.networking.k8s.io/web-allow configured" in kubectl(
        "apply", "-f", str(manifest)).stdout
    assert "To Port Range: 80-90/TCP" in kubectl("describe", "netpol", "web-allow", "-n",
                                                 "lab").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    done = kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    for cause in ("spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer",
                  'spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "10.1.0.0/24": must be '
                  "a strict subset of `cidr`",
                  "spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or "
                  "equal to `port`"):
        assert cause in done.stderr


WIDGET = """\
apiVersion: example.podlab.dev/v1
kind: Widget
metadata:
  name: blue
spec:
  color: blue
  size: 3
"""


def test_a_kind_added_as_one_module_is_served_to_kubectl(tmp_path: Path) -> None:
    store = Store(kinds=KINDS)
    path = tmp_path / "widget.yaml"
    path.write_text(WIDGET)
    with serving(store, tmp_path) as kubectl:
        assert kubectl("apply", "-f", str(path)).stdout.strip() == \
            "widget.example.podlab.dev/blue created"
        assert kubectl("apply", "-f", str(path)).stdout.strip() == \
            "widget.example.podlab.dev/blue unchanged"
        path.write_text(WIDGET.replace("name: blue", "name: red").replace("blue", "red")
                        .replace("size: 3\n", ""))
        kubectl("apply", "-f", str(path))
        wide = table(kubectl("get", "widgets", "-o", "wide").stdout)
        blue = table(kubectl("get", "wd", "--field-selector", "spec.color=blue").stdout)
    assert [(r["NAME"], r["SIZE"], r["COLOR"]) for r in wide] == [
        ("blue", "3", "blue"), ("red", "1", "red")]  # red's size is the kind's default
    assert [r["NAME"] for r in blue] == ["blue"]
