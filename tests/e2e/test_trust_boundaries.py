"""What a pod can reach is what a pod in a cluster can reach: from inside one, the cloud's
admin endpoints do not exist and the kube API wants a token; an agent's token reads and
cannot write; the files that hold secrets are their owner's alone."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi, running
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.root

# From inside a netns: one HTTP(S) request, answered as [status, body], or [0, why] when
# nothing answers. TLS is not verified: a pod has no CA, and 401 must come either way.
PROBE = """
import json, ssl, sys, urllib.error, urllib.request
url, method, token, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
request = urllib.request.Request(url, method=method, headers=headers,
                                 data=body.encode() if body else None)
try:
    answer = urllib.request.urlopen(request, timeout=5,
                                    context=ssl._create_unverified_context())
    print(json.dumps([answer.status, answer.read().decode()[:200]]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode()[:500]]))
except OSError as e:
    print(json.dumps([0, str(e)]))
"""
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder"},
       "spec": {"containers": [{"name": "main", "image": "agnhost"}]}}


def ask(lab: Lab, target: str, url: str, method: str = "GET", *, token: str = "",
        body: object = None) -> tuple[int, str]:
    out = lab.exec(target, ["python3", "-c", PROBE, url, method, token,
                            json.dumps(body) if body is not None else ""]).stdout
    code, text = json.loads(out)
    return int(code), str(text)


@pytest.fixture
def pod_lab(lab: Lab) -> Lab:
    api = LabApi(lab.state.kubeconfig)
    api.call("POST", "/api/v1/namespaces/default/pods", POD)
    eventually(lambda: running(api.pods(), {"intruder"}), what="the pod Running")
    return lab


def test_from_a_pod_no_admin_endpoint_and_no_anonymous_api(pod_lab: Lab) -> None:
    lab, me = pod_lab, "default/intruder"
    assert lab.cloud is not None
    eni = lab.cloud.model.create_eni(lab.state.node("n1").vswitch, security_groups=["sg"])
    token = lab.cloud.admin_token  # even a pod that somehow had it
    for endpoint in (lab.state.cloud_endpoint, lab.state.cloud_endpoint_host):
        for verb, method in (("state", "GET"), ("faults", "POST"), ("reset", "POST")):
            code, body = ask(lab, me, f"http://{endpoint}/_podlab/{verb}", method,
                             token=token, body={"rules": []} if verb == "faults" else None)
            assert code == 400, (endpoint, verb, body)
            assert '"Code"' in body, "an Alibaba error, not an admin answer"
    assert ask(lab, me, f"{lab.state.cloud_admin}/_podlab/reset", "POST", token=token)[0] == 0
    assert eni.id in lab.cloud.model.enis, "nothing was reset"

    api = "https://100.100.80.1:6443"
    for path, method in (("/api/v1/pods", "GET"), ("/api", "GET"),
                         ("/api/v1/namespaces/default/pods/intruder", "DELETE")):
        code, body = ask(lab, me, api + path, method)
        assert code == 401, (path, body)
        assert '"Unauthorized"' in body
    assert "intruder" in LabApi(lab.state.kubeconfig).pods()


def test_an_agents_token_reads_and_cannot_write(lab: Lab) -> None:
    token = (Path(lab.state.dir) / "nodes" / "n1" / "kube-token").read_text()
    api = "https://100.100.80.1:6443/api/v1/namespaces/default/pods"
    assert ask(lab, "n1", api, token=token)[0] == 200
    code, body = ask(lab, "n1", api, "POST", token=token, body=POD)
    assert code == 403, body
    assert "system:node:n1" in body
    assert "intruder" not in LabApi(lab.state.kubeconfig).pods()


def test_files_with_secrets_are_their_owners_alone(lab: Lab) -> None:
    node = Path(lab.state.dir) / "nodes" / "n1"
    secrets = [node / "agent.json", node / "kube-token", Path(lab.state.kubeconfig),
               lab.state.cloud_admin_token_file, *sorted((node / "agent").glob("*.db"))]
    assert len(secrets) >= 5, secrets
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
