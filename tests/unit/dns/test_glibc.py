"""glibc's resolver against the server, from a netns with a pod's resolv.conf (ndots:5 and
the cluster search path): an external name costs 8 wire queries without autopath (A and
AAAA for each of 4 names) and 2 with it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podlab.datapath.endpoints import service_endpoints
from podlab.dns import Autopath, Chain, ClusterZone, Handler, StaticZone

from .helpers import serving

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2 for a netns")


@dataclass
class Pod:
    netns: str
    ip: str
    dns_ip: str

    def getent(self, name: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.netns, "getent", "ahosts", name],
                              check=False, capture_output=True, text=True, timeout=30).stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    tag = secrets.token_hex(3)
    netns, host_if, subnet = f"podlab-dnsA-{tag}", f"dnsA{tag}", 16 + secrets.randbelow(200)
    host_ip, pod_ip = f"10.253.{subnet}.1", f"10.253.{subnet}.2"
    etc = Path("/etc/netns") / netns
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", netns, "addr", "add", f"{pod_ip}/30", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {host_ip}\n"
            "search default.svc.cluster.local svc.cluster.local cluster.local\n"
            "options ndots:5 timeout:2 attempts:1\n")
        yield Pod(netns, pod_ip, host_ip)
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def chain(pod: Pod, autopath: bool) -> Chain:
    zone = ClusterZone()
    zone.set_services([service_endpoints(
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "172.21.0.20", "ports": [{"port": 80}]}}, [])])
    stages: list[Handler] = [zone, StaticZone()]
    if autopath:
        stages.insert(0, Autopath("cluster.local", {pod.ip: "default"}.get))
    return Chain(stages)


@pytest.mark.parametrize(("autopath", "queries"), [(True, 2), (False, 8)])
def test_external_name_queries_on_the_wire(pod: Pod, autopath: bool, queries: int) -> None:
    with serving(chain(pod, autopath), host=pod.dns_ip, port=53) as (server, _):
        assert "203.0.113.10" in pod.getent("aliyun.com")
        sent = server.log.after(0)
    assert len(sent) == queries, [(r["qname"], r["qtype"], r["rcode"]) for r in sent]
    assert all(r["client"] == pod.ip for r in sent)


def test_a_service_short_name_takes_two_queries(pod: Pod) -> None:
    with serving(chain(pod, True), host=pod.dns_ip, port=53) as (server, _):
        assert "172.21.0.20" in pod.getent("web")
        assert len(server.log.after(0)) == 2


def test_a_truncated_reply_is_asked_again_over_tcp(pod: Pod) -> None:
    big = "".join(f"big.example.com. 60 IN A 198.51.100.{i}\n" for i in range(1, 41))
    stages: list[Handler] = [Autopath("cluster.local", {pod.ip: "default"}.get),
                             ClusterZone(), StaticZone(big)]
    with serving(Chain(stages), host=pod.dns_ip, port=53) as (server, _):
        found = pod.getent("big.example.com")
        sent = [(r["transport"], r["qtype"]) for r in server.log.after(0)]
    assert "198.51.100.40" in found
    assert ("tcp", "A") in sent, sent
