"""NetworkPolicy through the agents of a default (eBPF) lab (issue 14): a policy applied
with the API changes what a pod on another node can connect to, `podlab flows` says why
a connection was dropped, the enforcement outlives a `kill -9` of the agent, whose
successor adopts the maps, and the metrics count the drops by reason."""

from __future__ import annotations

import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from podlab.datapath.bpf.policy_model import FIRST_POD_IDENTITY
from podlab.lab import Lab
from podlab.lab import netns as lab_netns
from podlab.lab.kube.manifests import LabApi, apply, load_documents, running
from podlab.lab.pytest_plugin import LabFactory
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.e2e.helpers import eventually, podlab

pytestmark = [pytest.mark.root, pytest.mark.kernel(*EBPF_NEEDS)]

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: n1
  containers:
  - name: web
    image: podlab/workload
    ports: [{name: http, containerPort: 8080}, {name: alt, containerPort: 8081}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: n2
  containers: [{name: main, image: podlab/workload}]
"""
DENY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""


def allow_client(port: int) -> dict[str, Any]:
    """The client may connect to web's `port`."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-client"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                  "ports": [{"port": port}]}]}}


POLICIES = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
CONNECT_TIMEOUT = 0.3  # a dropped SYN: long before TCP's first retransmission (1 s)
PROBE_TIMEOUT = 0.05  # the latency's resolution: a connection in a lab takes < 1 ms


def start_pods(lab: Lab) -> tuple[LabApi, str, str]:
    """web on n1, client on n2, both Running: the API, web's IP and the client's netns."""
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(PODS, "pods.yaml"), "pods.yaml")

    def up() -> dict[str, dict[str, Any]] | None:
        pods = api.pods()
        return pods if running(pods, ["web", "client"]) else None

    pods = eventually(up, what="web and client Running")
    return api, str(pods["web"]["status"]["podIP"]), lab.state.pod("default", "client").netns


def deny_web(api: LabApi) -> None:
    apply(api, load_documents(DENY, "deny.yaml"), "deny.yaml")


def allow(api: LabApi, port: int) -> None:
    apply(api, [allow_client(port)], "allow.yaml")


def connects(netns: str, ip: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """A new TCP connection from inside `netns`."""
    return lab_netns.connects(netns, ip, port, timeout)


def flows(lab: Lab, *argv: str) -> list[dict[str, Any]]:
    out = podlab("flows", "--name", lab.name, "--json", *argv)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def followed(proc: subprocess.Popen[bytes], wanted: Callable[[dict[str, Any]], bool],
             timeout: float = 60.0) -> dict[str, Any]:
    """The first flow `podlab flows --follow --json` prints that is `wanted`."""
    assert proc.stdout is not None
    fd, pending = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while True:
        *lines, pending = pending.split(b"\n")
        for line in lines:
            flow: dict[str, Any] = json.loads(line)
            if wanted(flow):
                return flow
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            pytest.fail(f"--follow printed no such flow within {timeout:.0f}s")
        chunk = os.read(fd, 65536)
        assert chunk, "--follow ended by itself"
        pending += chunk


def metrics(lab: Lab, node: str) -> dict[str, float]:
    ip = lab.state.node(node).primary_ip
    text = lab.exec(node, ["curl", "-sS", f"http://{ip}:9464/metrics"]).stdout
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines() if line.startswith("podlab_agent_policy")}


def test_a_default_deny_drops_and_flows_name_the_reason_and_the_policy(
        lab_factory: LabFactory) -> None:
    lab = lab_factory()
    api, web, client = start_pods(lab)
    client_ip = lab.state.pod("default", "client").ip
    assert connects(client, web, 8080), "no policy: everything allowed"

    deny_web(api)
    eventually(lambda: not connects(client, web, 8080), what="default deny enforced")
    dropped = [f for f in flows(lab, "--verdict", "dropped", "--pod", "default/web")
               if f["src"]["ip"] == client_ip and f["dst"]["port"] == 8080]
    assert dropped, "the drop is in the flow log"
    drop = dropped[0]
    assert (drop["node"], drop["protocol"], drop["direction"], drop["reason"],
            drop["policies"]) == ("n1", "tcp", "ingress", "default-deny", ["default/deny-web"])
    assert (drop["src"]["pod"], drop["dst"]["pod"], drop["dst"]["ip"]) == \
        ("default/client", "default/web", web)
    assert drop["src"]["port"] > 0
    identities = drop["src"]["identity"], drop["dst"]["identity"]
    assert min(identities) >= FIRST_POD_IDENTITY
    assert identities[0] != identities[1]
    shown = podlab("flows", "--name", lab.name, "--node", "n1", "--verdict", "dropped")
    assert f"default/client (identity {identities[0]}) -> default/web (identity " \
           f"{identities[1]}) :8080/tcp ingress DROPPED default-deny (policies: " \
           "default/deny-web)" in shown.stdout, shown.stdout
    assert flows(lab, "--verdict", "allowed") == [], "allows are not sampled by default"

    allow(api, 8080)
    eventually(lambda: connects(client, web, 8080), what="the allow policy restores it")
    follower = subprocess.Popen(
        [sys.executable, "-m", "podlab", "flows", "--name", lab.name, "--pod",
         "default/client", "--follow", "--json"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert not connects(client, web, 8081), "a port the rules do not name"
        refused = followed(follower, lambda f: f["dst"]["port"] == 8081)
    finally:
        follower.send_signal(signal.SIGINT)
        _, said = follower.communicate(timeout=30)
    assert (follower.returncode, said) == (130, b""), "Ctrl-C ends it, saying nothing"
    assert (refused["reason"], sorted(refused["policies"])) == \
        ("no-policy-allows", ["default/allow-client", "default/deny-web"])

    for node in ("n1", "n2"):
        sampled = podlab("agent", "allow-sampling", "1", "--name", lab.name, "--node", node)
        assert sampled.returncode == 0, sampled.stderr
    assert connects(client, web, 8080)

    def both_ends() -> dict[str, dict[str, Any]] | None:
        ends = {f["node"]: f for f in flows(lab, "--verdict", "allowed")
                if f["dst"]["port"] == 8080}
        return ends if len(ends) == 2 else None

    ends = eventually(both_ends, what="the sampled allow, at both ends")
    assert (ends["n2"]["direction"], ends["n1"]["direction"]) == ("egress", "ingress")
    for end in ends.values():
        assert (end["src"]["identity"], end["dst"]["identity"]) == identities, \
            "identities are the same on every node and in every flow"

    n1 = metrics(lab, "n1")
    assert n1['podlab_agent_policy_drops_total{reason="default-deny"}'] >= 1
    assert n1['podlab_agent_policy_drops_total{reason="no-policy-allows"}'] >= 1
    assert n1["podlab_agent_policy_enforcement_seconds_count"] >= 2
    assert n1['podlab_agent_policy_endpoints{isolated="ingress"}'] == 1
    assert n1['podlab_agent_policy_map_entries{map="pol_ingress_map"}'] == 1
    assert n1['podlab_agent_policy_identities{kind="pod"}'] >= 2


def test_enforcement_latency_and_a_killed_agent_keeps_enforcing(
        lab_factory: LabFactory) -> None:
    lab = lab_factory()
    api, web, client = start_pods(lab)
    deny_web(api)
    allow(api, 8080)
    eventually(lambda: connects(client, web, 8080), what="allowed on 8080")

    # Policy to enforcement, as a client sees it: from the API's answer to the first new
    # connection that meets the change (its SYN is sent when the attempt starts).
    latencies = []
    for i in range(20):
        port = 8081 if i % 2 == 0 else 8080
        allow(api, port)  # a merge patch of the policy
        accepted = time.monotonic()
        while True:
            attempt = time.monotonic()
            if connects(client, web, 8080, PROBE_TIMEOUT) == (port == 8080):
                latencies.append(attempt - accepted)
                break
            assert attempt - accepted < 30, f"change {i} not enforced within 30 s"
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    agent = metrics(lab, "n1")
    share = agent["podlab_agent_policy_enforcement_seconds_sum"] / \
        agent["podlab_agent_policy_enforcement_seconds_count"]
    print(f"\npolicy change to enforcement over {len(latencies)} changes: "
          f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms (the agent's share, "
          f"watch event to maps written: mean {share * 1000:.1f} ms)")

    # kill -9: the maps stay as the agent wrote them; its successor adopts them and
    # writes only what changed meanwhile (here: web's ingress rules, one trie).
    assert lab.agents is not None
    eventually(lambda: connects(client, web, 8080), what="8080 allowed after the last change")
    lab.agents.kill("n1")
    api.call("DELETE", f"{POLICIES}/allow-client")  # nobody writes it while the agent is down
    assert all(connects(client, web, 8080) for _ in range(5)), "the maps hold what was written"
    assert not connects(client, web, 8081), "and go on dropping what it did not allow"
    log = lab.agents.node_dir("n1") / "agent.log"
    before = log.stat().st_size
    lab.agents.start("n1")
    eventually(lambda: not connects(client, web, 8080), what="the successor reconciled")
    with log.open() as f:
        f.seek(before)
        logged = [json.loads(line) for line in f if line.startswith("{")]
    writes = [e for e in logged if e["event"] == "policy_written"]
    assert (writes[0]["swapped"], writes[0]["written"]) == (1, 0), writes[0]
    info = podlab("agent", "info", "--name", lab.name, "--node", "n1")
    assert json.loads(info.stdout)["policy_synced"] is True
