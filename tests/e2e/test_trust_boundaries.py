"""What a pod can reach is what a pod in a cluster can reach: from inside one, the cloud's
admin endpoints do not exist and the kube API wants a token; instance metadata refuses it
(the node's RAM role stays the node's) and the lab's AccessKey, which anyone can read in
podlab's source, is refused from anywhere but the host, so nothing a pod can reach
unassigns another pod's address; an agent's token reads and cannot write; the files that
hold secrets are their owner's alone."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi, running
from podlab.lab.pytest_plugin import LabFactory
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


# From inside a netns, with the official SDK (a pod's processes share the host's files,
# so it has podlab's Python): metadata's role credentials, then UnassignPrivateIpAddresses
# of `ip` on `eni` signed with the lab's well-known AccessKey at both cloud listeners, and
# with the role's credentials if metadata gave them. The answer of each attempt by where.
CLOUD_PROBE = """
import json, sys, urllib.error, urllib.request
from alibabacloud_ecs20140526 import models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.models import Config
from alibabacloud_vpc20160428 import models as vpc_models
from alibabacloud_vpc20160428.client import Client as VpcClient
from Tea.exceptions import TeaException
from podlab.fakecloud import DEFAULT_CREDENTIALS
eni, ip, endpoints = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {}
def unassign(where, key, secret, token=None, endpoint=endpoints[0], action="unassign"):
    config = Config(access_key_id=key, access_key_secret=secret, security_token=token,
                    endpoint=endpoint, region_id="cn-hangzhou", protocol="http",
                    read_timeout=5000, connect_timeout=3000)
    try:
        if action == "unassign":
            Client(config).unassign_private_ip_addresses(models.UnassignPrivateIpAddressesRequest(
                region_id="cn-hangzhou", network_interface_id=eni, private_ip_address=[ip]))
        else:  # an action the node role's policy does not name
            VpcClient(config).describe_vpcs(vpc_models.DescribeVpcsRequest(
                region_id="cn-hangzhou"))
        out[where] = "OK"
    except TeaException as e:
        out[where] = str(e.code)
    except Exception as e:
        out[where] = "unreachable: " + type(e).__name__
meta = "http://100.100.100.200/latest/"
try:
    token = urllib.request.urlopen(urllib.request.Request(meta + "api/token", method="PUT",
        headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "60"}), timeout=5).read().decode()
    role = urllib.request.urlopen(urllib.request.Request(
        meta + "meta-data/ram/security-credentials/podlab-node",
        headers={"X-aliyun-ecs-metadata-token": token}), timeout=5).read().decode()
    out["metadata"] = "OK"
except urllib.error.HTTPError as e:
    out["metadata"], role = e.code, None
except OSError as e:
    out["metadata"], role = "unreachable: " + str(e), None
(key, secret), = DEFAULT_CREDENTIALS.items()
for endpoint in endpoints:
    unassign("lab key at " + endpoint, key, secret, endpoint=endpoint)
if role:
    c = json.loads(role)
    unassign("role, forged token", c["AccessKeyId"], c["AccessKeySecret"], "forged")
    unassign("role, no token", c["AccessKeyId"], c["AccessKeySecret"])
    unassign("role, beyond its policy", c["AccessKeyId"], c["AccessKeySecret"],
             c["SecurityToken"], action="describe")
    unassign("role", c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"])
print(json.dumps(out))
"""
VICTIMS = ("victim-0", "victim-1")  # one at least has a secondary address: unassignable


def ask(lab: Lab, target: str, url: str, method: str = "GET", *, token: str = "",
        body: object = None) -> tuple[int, str]:
    out = lab.exec(target, ["python3", "-c", PROBE, url, method, token,
                            json.dumps(body) if body is not None else ""]).stdout
    code, text = json.loads(out)
    return int(code), str(text)


def with_intruder(lab: Lab) -> Lab:
    api = LabApi(lab.state.kubeconfig)
    api.call("POST", "/api/v1/namespaces/default/pods", POD)
    eventually(lambda: running(api.pods(), {"intruder"}), what="the pod Running")
    return lab


@pytest.fixture
def pod_lab(lab: Lab) -> Lab:
    return with_intruder(lab)


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


def try_to_unassign(lab: Lab, target: str, ip: str) -> dict[str, object]:
    """CLOUD_PROBE from `target` against `ip`: each attempt's answer by where it was."""
    assert lab.cloud is not None
    eni = next(e.id for e in lab.cloud.model.all_enis() if ip in e.ips)
    out = lab.exec(target, [sys.executable, "-c", CLOUD_PROBE, eni, ip,
                            lab.state.cloud_endpoint, lab.state.cloud_endpoint_host]).stdout
    answers: dict[str, object] = json.loads(out)
    return answers


def assigned(lab: Lab, ip: str) -> bool:
    assert lab.cloud is not None
    return any(ip in e.ips for e in lab.cloud.model.all_enis())


def test_a_pod_cannot_unassign_another_pods_address(pod_lab: Lab) -> None:
    lab, api = pod_lab, LabApi(pod_lab.state.kubeconfig)
    assert lab.cloud is not None
    for name in VICTIMS:
        api.call("POST", "/api/v1/namespaces/default/pods",
                 {**POD, "metadata": {"name": name}})
    eventually(lambda: running(api.pods(), VICTIMS), what="the victims Running")
    secondary = {ip for e in lab.cloud.model.all_enis() for ip in e.secondary_ips}
    victim = next(ip for name in VICTIMS
                  if (ip := api.pods()[name]["status"]["podIP"]) in secondary)
    answers = try_to_unassign(lab, "default/intruder", victim)
    assert answers["metadata"] == 403, "metadata refuses pods (pod_metadata is off)"
    for endpoint in (lab.state.cloud_endpoint, lab.state.cloud_endpoint_host):
        assert answers[f"lab key at {endpoint}"] == "Forbidden.RAM", answers
    assert assigned(lab, victim)
    config = json.loads((Path(lab.state.dir) / "nodes" / "n1" / "agent.json").read_text())
    assert not {"access_key_id", "access_id"} & set(config), "no cloud key on the host's disk"


def test_a_lab_may_serve_metadata_to_pods(lab_factory: LabFactory) -> None:
    """`pod_metadata=True` is a cluster without that hardening: a pod reads its node's
    role credentials, and with them does what the node's agent may (why it is off)."""
    lab = with_intruder(lab_factory(pod_metadata=True))
    assert lab.cloud is not None
    ip = next(ip for e in lab.cloud.model.all_enis() for ip in e.secondary_ips)
    answers = try_to_unassign(lab, "default/intruder", ip)
    assert answers["metadata"] == "OK"
    assert answers["role"] == "OK"
    assert not assigned(lab, ip)


def test_the_node_role_is_the_nodes_checked_and_scoped(lab: Lab) -> None:
    """From a node, where the agent runs: metadata gives the role's STS credentials, which
    work only with their own token and only for the role's actions; the lab's key does not
    work there either."""
    assert lab.cloud is not None
    ip = next(ip for e in lab.cloud.model.all_enis() for ip in e.secondary_ips)  # n2's pool
    answers = try_to_unassign(lab, "n1", ip)
    assert answers["metadata"] == "OK"
    assert answers[f"lab key at {lab.state.cloud_endpoint}"] == "Forbidden.RAM"
    assert answers["role, forged token"] == "InvalidSecurityToken.MismatchWithAccessKey"
    assert answers["role, no token"] == "InvalidSecurityToken.Malformed"
    assert answers["role, beyond its policy"] == "Forbidden.RAM"
    # last, and OK (not IpUnassigned): none of the refused attempts had unassigned it
    assert answers["role"] == "OK", "a node's role may unassign (its agent must)"
    assert not assigned(lab, ip)


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
