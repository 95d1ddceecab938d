"""DNS in a lab (issue 19): pods resolve through their node's node-local cache, which does
autopath for them; external names come from the topology's `internet:` zone served by the
VPC's resolvers; `podlab dns log` shows each lookup. ipvlan runs in the VM (test_vm)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from typing import Any

import pytest

from podlab.lab import Lab
from podlab.lab.constants import KUBE_DNS_IP, NODE_LOCAL_DNS_IP
from podlab.lab.kube.manifests import LabApi, apply, load_documents, running
from podlab.lab.pytest_plugin import LabFactory
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.e2e.helpers import eventually, podlab

pytestmark = [pytest.mark.root, pytest.mark.kernel(*EBPF_NEEDS, "iptables")]

APP = """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: main, image: podlab/workload}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: podlab/workload, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""
# Lab settings: the default (veth, eBPF Services), exclusive ENI (no link to the node: the
# pod's tc program takes the node-local address to it), and kube-proxy's iptables mode.
LABS: dict[str, dict[str, Any]] = {
    "veth": {},
    "exclusive-eni": {"agent_settings": {"eni_mode": "exclusive", "min_pool_size": 0}},
    "veth-iptables": {"service_proxy": "iptables"}}
ALIYUN = "106.11.248.144"  # the default internet zone's (podlab.fakecloud.topology)


def dns_lab(lab_factory: LabFactory, kind: str = "veth") -> tuple[Lab, LabApi]:
    """A lab with DNS (the test fixture's default is off) running APP."""
    lab = lab_factory(dns=True, **LABS[kind])
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(APP, "app.yaml"), "app.yaml")
    eventually(lambda: (pods := api.pods()) and running(pods, ["client", *(
        n for n in pods if n.startswith("web-"))]) and len(pods) == 2,
        what="the client and web Running")
    return lab, api


def lookups(lab: Lab, pod: str = "default/client") -> list[dict[str, Any]]:
    """The pod's lookups as `podlab dns log --json` shows them, oldest first."""
    proc = podlab("dns", "log", "--name", lab.name, "--pod", pod, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def getent(lab: Lab, name: str) -> tuple[str, list[dict[str, Any]]]:
    """`getent ahosts name` in the client (glibc's getaddrinfo, A and AAAA), and the
    queries it sent to the node-local cache."""
    seen = len(lookups(lab))
    out = lab.exec("default/client", ["getent", "ahosts", name], check=False).stdout

    def sent() -> list[dict[str, Any]] | None:
        new = lookups(lab)[seen:]
        return new if len(new) >= 2 else None

    return out, eventually(sent, timeout=10, what=f"the lookups of {name} in the log")


@pytest.mark.parametrize("kind", list(LABS))
def test_a_pods_lookups_take_two_queries_through_the_node_local_cache(
        lab_factory: LabFactory, kind: str) -> None:
    lab, api = dns_lab(lab_factory, kind)
    resolv = lab.exec("default/client", ["cat", "/etc/resolv.conf"]).stdout
    assert f"nameserver {NODE_LOCAL_DNS_IP}" in resolv
    assert "ndots:5" in resolv
    out, sent = getent(lab, "aliyun.com")
    assert ALIYUN in out, out
    # glibc asks A and AAAA of the first search name; autopath answers both: 8 become 2
    assert sorted(q["qtype"] for q in sent) == ["A", "AAAA"], sent
    assert {q["qname"] for q in sent} == {"aliyun.com.default.svc.cluster.local."}, sent
    assert all(q["pod"] == "default/client" and q["hit"] == "aliyun.com." for q in sent), sent
    web = api.call("GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
    out, sent = getent(lab, "web")
    assert web in out
    assert len(sent) == 2, sent


def test_dig_shows_the_autopath_cname_and_dns_log_the_walk(lab_factory: LabFactory) -> None:
    lab, _ = dns_lab(lab_factory)
    out = lab.exec("default/client", ["dig", "+search", "+noall", "+answer", "aliyun.com"]).stdout
    records = [line.split() for line in out.splitlines()]
    # the name the client asked, its CNAME first, then the found name's records
    assert [r[0] for r in records] == ["aliyun.com.default.svc.cluster.local.",
                                       "aliyun.com."], out
    assert [r[3:] for r in records] == [["CNAME", "aliyun.com."], ["A", ALIYUN]], out
    # the cluster DNS itself forwards names outside the cluster to the VPC's resolvers
    direct = lab.exec("default/client", ["dig", "+short", f"@{KUBE_DNS_IP}", "aliyun.com"])
    assert direct.stdout.split() == [ALIYUN], direct.stdout
    shown = podlab("dns", "log", "--name", lab.name, "--pod", "default/client").stdout
    line = next(row for row in shown.splitlines() if " A aliyun.com.default" in row)
    assert "nodelocal/n" in line, shown
    for part in ("default/client", "aliyun.com.default.svc.cluster.local. → "
                 "aliyun.com.svc.cluster.local. → aliyun.com.cluster.local. → "
                 "aliyun.com. (hit)"):
        assert part in line, shown
    query = podlab("dns", "query", "--name", lab.name, "default/client", "web")
    assert query.returncode == 0, query.stderr
    assert "web.default.svc.cluster.local." in query.stdout, query.stdout
    assert "2 queries on the wire" in query.stdout, query.stdout


def test_dns_log_follows_a_node_s_cache(lab_factory: LabFactory) -> None:
    lab, _ = dns_lab(lab_factory)
    node = lab.state.pod("default", "client").node
    follow = subprocess.Popen([sys.executable, "-m", "podlab", "dns", "log", "--name", lab.name,
                               "--node", node, "--follow", "--json"],
                              stdout=subprocess.PIPE, text=True)
    try:
        lab.exec("default/client", ["getent", "ahosts", "example.com"])
        assert follow.stdout is not None
        seen: list[dict[str, Any]] = []
        while not any("example.com." in r["qname"] for r in seen):
            ready, _, _ = select.select([follow.stdout], [], [], 10)
            assert ready, f"nothing followed within 10 s: {seen}"
            seen.append(json.loads(follow.stdout.readline()))
        assert {r["server"] for r in seen} == {f"nodelocal/{node}"}
    finally:
        follow.kill()
        follow.communicate()


def test_a_killed_node_local_cache_comes_back(lab_factory: LabFactory) -> None:
    """Pods name only the node-local address (no second nameserver to fall back to), so
    the lab restarts a dead cache, as a DaemonSet's pod is."""
    lab, _ = dns_lab(lab_factory)
    assert lab.nodelocal is not None
    node = lab.state.pod("default", "client").node
    old = lab.nodelocal.procs[node]
    lab.nodelocal.kill(node)
    eventually(lambda: (new := lab.nodelocal and lab.nodelocal.procs.get(node))
               and new is not old, timeout=20, what="the cache restarted")
    eventually(lambda: ALIYUN in lab.exec("default/client", ["getent", "ahosts", "aliyun.com"],
                                          check=False).stdout,
               timeout=20, what="lookups answered again")
