"""eBPF Services in a default lab (issue 13): the agents' programs on each pod's eth0 and
the nodes' sockets replace kube-proxy. Real traffic from a client pod and from a node's
netns, with the pods' veth TX checksum offload left on, as the lab's datapath leaves it."""

from __future__ import annotations

import collections
import json
import socket
from typing import Any

import pytest

from podlab.datapath.kubeproxy.nftables import TABLE
from podlab.datapath.netlink import in_netns
from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi, apply, load_documents
from podlab.lab.kube.manifests import running as all_running
from podlab.lab.kube.probe import probe
from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import LabFactory, unique_lab_name
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.e2e.helpers import cni, eventually, podlab

pytestmark = [pytest.mark.root, pytest.mark.kernel(*EBPF_NEEDS, "iptables", "nftables",
                                                      "ethtool")]

WEB = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers: [{name: main, image: podlab/workload}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: podlab/workload
        ports:
        - {name: http, containerPort: 8080}
        - {name: echo, containerPort: 9000}
        - {name: udp-echo, containerPort: 9000, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: echo, port: 7, targetPort: echo}
  - {name: udp, port: 9000, protocol: UDP, targetPort: 9000}
"""
# A second Service over the same pods, created while an agent is down.
LATE = """
apiVersion: v1
kind: Service
metadata: {name: late}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: http}]
"""


def serve_web(lab: Lab) -> tuple[LabApi, str, dict[str, dict[str, Any]]]:
    """The Deployment, its Service and a client, running with three ready endpoints: the
    API, the ClusterIP and the pods."""
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(WEB, "web.yaml"), "web.yaml")

    def up() -> dict[str, dict[str, Any]] | None:
        pods = api.pods()
        web = web_pods(pods)
        return pods if len(web) == 3 and all_running(pods, [*web, "client"]) else None

    pods = eventually(up, what="three web pods and the client Running")
    ip = str(api.call("GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"])
    return api, ip, pods


def web_pods(pods: dict[str, dict[str, Any]]) -> set[str]:
    return {n for n in pods if n.startswith("web-")}


def http_get(netns: str, ip: str, port: int, path: str) -> str:
    """The body of GET `path`, from a socket in `netns`."""
    sock = in_netns(netns, lambda: socket.create_connection((ip, port), timeout=2))
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.decode().partition("\r\n\r\n")[2].strip()


def echo(sock: socket.socket, payload: bytes) -> bool:
    sock.sendall(payload)
    return sock.recv(len(payload)) == payload


def reaches(netns: str, ip: str, port: int, names: set[str]) -> bool:
    return {probe(netns, ip, port, "tcp")[2] for _ in range(30)} == names


def tc_program_ids(lab: Lab, pod: str) -> list[int]:
    """The ids of the bpf programs on the pod's eth0 (ingress, egress)."""
    ids = []
    for direction in ("ingress", "egress"):
        out = json.loads(lab.exec(pod, ["tc", "-j", "filter", "show", "dev", "eth0",
                                        direction]).stdout or "[]")
        ids += [f["options"]["prog"]["id"] for f in out if "prog" in f.get("options", {})]
    return ids


def test_a_default_lab_serves_services_by_ebpf_without_kube_proxy(
        lab_factory: LabFactory) -> None:
    lab = lab_factory()
    status = json.loads(podlab("status", "--name", lab.name, "--json").stdout)
    assert {n["service_proxy"] for n in status["nodes"]} == {"ebpf"}
    _, ip, pods = serve_web(lab)
    client = lab.state.pod("default", "client")

    answers = collections.Counter(probe(client.netns, ip, 80, "tcp")[2] for _ in range(300))
    assert set(answers) == web_pods(pods), answers
    chi2 = sum((n - 100) ** 2 / 100 for n in answers.values())
    assert chi2 < 13.8, f"uneven: {answers} (chi-square {chi2:.1f}, 2 dof, p < 0.001)"
    assert http_get(client.netns, ip, 80, "/clientip") == client.ip, "the client's own IP"
    assert probe(client.netns, ip, 9000, "udp")[0], "UDP through the Service"
    assert tc_program_ids(lab, "default/client"), "ADD attached the programs"
    offload = lab.exec("default/client", ["ethtool", "-k", "eth0"]).stdout
    assert "tx-checksumming: on" in offload, "all of the above with TX checksum offload on"

    for node in lab.state.nodes:
        assert "KUBE-" not in lab.exec(node.name, ["iptables-save"]).stdout
        assert TABLE not in lab.exec(node.name, ["nft", "list", "ruleset"]).stdout

    # A client in the node's own netns, as a process there (the socket LB).
    curl = lab.exec("n1", ["curl", "-sS", "--max-time", "3", f"http://{ip}/hostname"])
    assert curl.stdout.strip() in web_pods(pods)

    node = lab.state.node(client.node)
    metrics = lab.exec(node.name, ["curl", "-sS", f"http://{node.primary_ip}:9464/metrics"])
    samples = {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
               for line in metrics.stdout.splitlines() if line.startswith("podlab_agent_bpf")}
    assert samples['podlab_agent_bpf_translations_total{kind="translated"}'] >= 300
    assert samples['podlab_agent_bpf_map_entries{map="lb_services"}'] >= 3
    assert 'podlab_agent_bpf_drops_total{reason="reject_tcp"}' in samples
    assert samples['podlab_agent_bpf_sync_seconds_count{kind="update"}'] > 0

    listed = podlab("bpf", "services", "--name", lab.name, "--node", client.node, "--json")
    assert listed.returncode == 0, listed.stderr
    frontends = {s["frontend"]: s["backends"] for s in json.loads(listed.stdout)}
    assert frontends[f"{ip}:80/tcp"] == 3
    backends = json.loads(podlab("bpf", "backends", "--name", lab.name, "--node",
                                 client.node, "--json").stdout)
    assert {b["backend"] for b in backends if b["frontend"] == f"{ip}:80/tcp"} == \
        {f"{p['status']['podIP']}:8080" for n, p in pods.items() if n.startswith("web-")}, \
        "the named targetPort resolved"
    assert any(c["service"] == f"{ip}:80" for c in connections(lab, client.node, client.ip))


def connections(lab: Lab, node: str, client_ip: str) -> list[dict[str, Any]]:
    """The node's conntrack entries of connections from `client_ip`."""
    listed = podlab("bpf", "conntrack", "--name", lab.name, "--node", node, "--json")
    return [c for c in json.loads(listed.stdout) if c["client"].startswith(f"{client_ip}:")]


def test_check_reports_a_missing_program_and_del_forgets_the_connections(lab: Lab) -> None:
    _, ip, _ = serve_web(lab)
    pod = lab.add_pod("default", "a", "n1")
    code, result = cni(lab, "ADD", "default/a", "n1")
    assert code == 0, result
    pod_ip = result["ips"][0]["address"].split("/")[0]
    held = in_netns(pod.netns, lambda: socket.create_connection((ip, 7), timeout=2))
    with held:  # established: its entries would live for hours
        assert echo(held, b"held")
        assert connections(lab, "n1", pod_ip)
        assert cni(lab, "CHECK", "default/a", "n1")[0] == 0
        lab.exec("default/a", ["tc", "filter", "del", "dev", "eth0", "egress"])
        code, error = cni(lab, "CHECK", "default/a", "n1")
        assert code != 0
        assert "eBPF Service programs are not attached to eth0" in error["details"]
        assert cni(lab, "DEL", "default/a", "n1")[0] == 0
        assert not connections(lab, "n1", pod_ip), "DEL forgot the pod's connections"


def test_an_agent_killed_and_restarted_drops_no_connection(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    api, ip, pods = serve_web(lab)
    client = lab.state.pod("default", "client")
    assert lab.agents is not None
    held = in_netns(client.netns, lambda: socket.create_connection((ip, 7), timeout=2))
    with held:
        assert echo(held, b"before")
        programs = tc_program_ids(lab, "default/client")
        lab.agents.kill(client.node)
        assert echo(held, b"while down"), "an established connection lives on"
        assert reaches(client.netns, ip, 80, web_pods(pods)), "Services keep working"
        apply(api, load_documents(LATE, "late.yaml"), "late.yaml")
        late = str(api.call("GET", "/api/v1/namespaces/default/services/late")["spec"]
                   ["clusterIP"])
        lab.agents.start(client.node)
        assert echo(held, b"after"), "the restarted agent kept it"
        assert tc_program_ids(lab, "default/client") == programs, "adopted, not loaded again"
        eventually(lambda: reaches(client.netns, late, 8081, web_pods(pods)),
                   what="the Service made while the agent was down, reconciled")


def test_services_from_exclusive_eni_pods_keep_the_client_ip(lab_factory: LabFactory) -> None:
    """Their packets leave through the ENI and never meet the node: the programs on the
    pod's ENI translate them, and no veth1 into the node is made."""
    lab = lab_factory(agent_settings={"eni_mode": "exclusive", "min_pool_size": 0})
    _, ip, pods = serve_web(lab)
    client = lab.state.pod("default", "client")
    assert http_get(client.netns, ip, 80, "/clientip") == client.ip
    assert reaches(client.netns, ip, 80, web_pods(pods))
    links = lab.exec("default/client", ["ip", "-o", "link"]).stdout
    assert "veth1" not in links, links


def test_podlab_up_takes_kube_proxy_as_the_baseline_on_demand() -> None:
    name = unique_lab_name()
    up = podlab("up", "--name", name, "--nodes", "1", "--service-proxy", "nftables")
    try:
        assert up.returncode == 0, up.stderr
        assert "kube-proxy in nftables mode; NetworkPolicy not enforced" in up.stderr
        status = json.loads(podlab("status", "--name", name, "--json").stdout)
        assert [n["service_proxy"] for n in status["nodes"]] == ["nftables"]
        rules = podlab("exec", "--name", name, "n1", "--", "nft", "list", "ruleset")
        assert TABLE in rules.stdout
        refused = podlab("bpf", "services", "--name", name)
        assert refused.returncode == 1
        assert "not eBPF" in refused.stderr
    finally:
        podlab("down", "--name", name)
    assert not leftovers(name)
