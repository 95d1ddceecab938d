"""Pods resolve as in a cluster: each has its hostname in a UTS namespace of its own, and
the resolv.conf and /etc/hosts kubelet would write, seen by every process entered into
it (the lab's exec path and `podlab exec`); nothing of either outlives the pod or the lab.
Resolution through the cluster DNS is tested with it (docs/dns.md); here, the config."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from podlab.lab import Lab
from podlab.lab.constants import KUBE_DNS_IP, NODE_LOCAL_DNS_IP, VPC_RESOLVERS
from podlab.lab.kube.manifests import LabApi, running
from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import LabFactory
from podlab.lab.sandbox import ETC_NETNS, uts_mounted, uts_path
from tests.e2e.helpers import eventually, podlab

pytestmark = pytest.mark.root
SEARCH = "search default.svc.cluster.local svc.cluster.local cluster.local\n"


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], **spec}}


def create_running(lab: Lab, *pods: dict[str, Any]) -> LabApi:
    api = LabApi(lab.state.kubeconfig)
    for pod in pods:
        api.call("POST", "/api/v1/namespaces/default/pods", pod)
    names = {p["metadata"]["name"] for p in pods}
    eventually(lambda: running(api.pods(), names), what=f"pods {sorted(names)} Running")
    return api


def both_exec_paths(lab: Lab, target: str, *argv: str) -> str:
    """`argv`'s output through the lab's exec path, checked equal to `podlab exec`'s."""
    ours = lab.exec(target, argv).stdout
    cli = podlab("exec", "--name", lab.name, target, "--", *argv)
    assert (cli.returncode, cli.stdout) == (0, ours), cli.stderr
    return ours


def test_a_pod_has_its_own_hostname_and_hosts_file(lab_factory: LabFactory) -> None:
    lab = lab_factory(dns=True, dns_nameserver="cluster")
    # web-0 of a StatefulSet: hostname web-0, subdomain its Service `web`
    LabApi(lab.state.kubeconfig).call("POST", "/apis/apps/v1/namespaces/default/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"serviceName": "web", "replicas": 1,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": manifest("")["spec"]}}})
    create_running(lab, manifest("client"))
    eventually(lambda: running(LabApi(lab.state.kubeconfig).pods(), ["web-0"]),
               what="the StatefulSet's web-0 Running")
    ip = lab.state.pod("default", "web-0").ip
    assert both_exec_paths(lab, "default/client", "hostname") == "client\n"
    assert both_exec_paths(lab, "default/web-0", "hostname") == "web-0\n"
    fqdn = "web-0.web.default.svc.cluster.local"
    assert both_exec_paths(lab, "default/web-0", "hostname", "-f") == f"{fqdn}\n"
    # from /etc/hosts, in no time: the cluster DNS is not asked (nor needed)
    found = lab.exec("default/web-0", ["timeout", "2", "getent", "hosts", "web-0"]).stdout
    assert found.split() == [ip, fqdn, "web-0"]
    # One UTS namespace per pod, the one bound under the run dir, for every process
    uts = f"uts:[{os.stat(uts_path(lab.name, 'default', 'web-0')).st_ino}]\n"
    assert both_exec_paths(lab, "default/web-0", "readlink", "/proc/self/ns/uts") == uts
    assert os.readlink("/proc/self/ns/uts") + "\n" != uts
    # ClusterFirst with `dns_nameserver: cluster`: the kube-dns Service
    assert both_exec_paths(lab, "default/client", "cat", "/etc/resolv.conf") == (
        f"{SEARCH}nameserver {KUBE_DNS_IP}\noptions ndots:5\n")


def test_resolv_conf_follows_the_dns_policy(lab_factory: LabFactory) -> None:
    lab = lab_factory(dns=True)
    create_running(
        lab, manifest("first"), manifest("host", dnsPolicy="Default"),
        manifest("none", dnsPolicy="None", dnsConfig={
            "nameservers": ["10.9.9.9"], "searches": ["corp.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}),
        manifest("merged", dnsConfig={"nameservers": ["10.9.9.9"],
                                      "searches": ["corp.example"],
                                      "options": [{"name": "ndots", "value": "1"}]}))
    node = "".join(f"nameserver {ip}\n" for ip in VPC_RESOLVERS)

    def resolv(pod: str) -> str:
        return both_exec_paths(lab, f"default/{pod}", "cat", "/etc/resolv.conf")

    assert resolv("first") == f"{SEARCH}nameserver {NODE_LOCAL_DNS_IP}\noptions ndots:5\n"
    assert resolv("host").startswith(node)
    assert "search" not in resolv("host")
    assert resolv("none") == ("search corp.example\nnameserver 10.9.9.9\n"
                              "options ndots:2 edns0\n")
    assert resolv("merged") == (f"{SEARCH.rstrip()} corp.example\nnameserver "
                                f"{NODE_LOCAL_DNS_IP}\nnameserver 10.9.9.9\noptions ndots:1\n")
    # A dnsConfig kubelet could not apply never reaches a node
    api = LabApi(lab.state.kubeconfig)
    with pytest.raises(ApiException) as refused:
        api.call("POST", "/api/v1/namespaces/default/pods",
                 manifest("bad", dnsPolicy="None", dnsConfig={"searches": ["a.example"]}))
    assert refused.value.status == 422
    assert "spec.dnsConfig.nameservers" in str(refused.value.body)


def test_nothing_of_a_sandbox_outlives_its_pod_or_the_lab(lab_factory: LabFactory) -> None:
    lab = lab_factory(agents=False)
    pods = [lab.add_pod("default", name, "n1") for name in ("a", "b", "c")]
    for pod in pods:
        lab.write_pod_files("default", pod.name, {"resolv.conf": "nameserver 10.0.0.1\n"})
    uts = {p.name: uts_path(lab.name, "default", p.name) for p in pods}
    assert lab.exec("default/a", ["cat", "/etc/resolv.conf"]).stdout == "nameserver 10.0.0.1\n"
    assert lab.exec("default/a", ["hostname"]).stdout == "a\n"
    assert all(uts_mounted(path) for path in uts.values())

    lab.delete_pod("default", "a")
    assert not (ETC_NETNS / pods[0].netns).exists()
    assert not uts["a"].parent.exists()
    # b's netns gone behind the lab's back (its owner died half-way through a delete)
    subprocess.run(["ip", "netns", "del", pods[1].netns], check=True)
    lab.down()
    assert leftovers(lab.name) == []
    assert not any((ETC_NETNS / p.netns).exists() for p in pods)
    assert not any(uts_mounted(path) for path in uts.values())
