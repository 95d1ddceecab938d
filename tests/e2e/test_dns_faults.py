"""DNS under faults in a lab (issue 19, item 6), through `lab.faults`: seeded loss between a
pod and its node-local cache, the cluster DNS's pods gone, the VPC's resolvers dead. Each
shows what the node-local cache keeps working, and fails with that feature broken
(docs/dns.md, "Faults")."""

from __future__ import annotations

import json
import sys
import time
from ipaddress import ip_address, ip_network

import pytest

from podlab.dns.cache import STALE_TTL
from podlab.dns.forward import TIMEOUT as FORWARD_TIMEOUT
from podlab.lab import Lab
from podlab.lab.constants import VPC_RESOLVERS
from podlab.lab.kube.manifests import LabApi
from podlab.lab.linkfaults import PERIOD, Match
from podlab.lab.pytest_plugin import LabFactory
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.e2e.helpers import eventually
from tests.e2e.test_dns import ALIYUN, dns_lab

pytestmark = [pytest.mark.root, pytest.mark.kernel(*EBPF_NEEDS, "iptables", "nftables")]
DNS = Match(("udp", "tcp"), port=53)
CLUSTER_TTL = 5  # every TTL of the cluster zone
COREDNS = "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
EXAMPLE = "93.184.215.14"  # example.com in the default internet zone

# Sequential lookups in one process in the pod, each timed: one process sends its packets in
# one order, so a seeded fault drops the same ones each run. glibc's timeout is 1 s (from
# RES_OPTIONS, not the pod's 5 s) so that the ~25 lost queries of a run cost 25 s, not 125;
# 3 attempts, not 2: at 5 % independent loss a query is lost twice once in 400, about once a
# run (seed 11 does it), and this hop has nothing but glibc's retry to recover it.
LOOKUPS = """
import json, socket, sys, time
out = []
for name in sys.argv[1:]:
    start = time.monotonic()
    try:
        ok = bool(socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP))
    except OSError:
        ok = False
    out.append((ok, time.monotonic() - start))
print(json.dumps(out))
"""
NAMES = ["web", "aliyun.com", "example.com", "web.default", "www.aliyun.com"]
RES_OPTIONS = "timeout:1 attempts:3"


def resolve_all(lab: Lab, names: list[str]) -> list[tuple[bool, float]]:
    proc = lab.exec("default/client", ["env", f"RES_OPTIONS={RES_OPTIONS}", sys.executable,
                                       "-c", LOOKUPS, *names])
    return [(ok, elapsed) for ok, elapsed in json.loads(proc.stdout)]


def dig(lab: Lab, name: str) -> tuple[str, list[list[str]], float]:
    """One query of `name` (fully qualified, A) from the client to its node-local cache,
    one try with a timeout longer than the cache's forwarding budget: (rcode, answer
    records split, seconds)."""
    start = time.monotonic()
    out = lab.exec("default/client", ["dig", "+tries=1", "+timeout=10", "+noall", "+comments",
                                      "+answer", f"{name}.", "A"], check=False).stdout
    elapsed = time.monotonic() - start
    status = next((line.split("status: ")[1].split(",")[0] for line in out.splitlines()
                   if "status: " in line), "no answer")
    records = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    return status, records, elapsed


def answered(lab: Lab, name: str, ip: str) -> int:
    """The TTL of `name`'s answer, which must be `ip`."""
    status, records, _ = dig(lab, name)
    assert status == "NOERROR", (status, records)
    assert [r[4] for r in records if r[3] == "A"] == [ip], records
    return int(records[-1][1])


def until_stale(lab: Lab, name: str, ip: str, timeout: float) -> None:
    """Ask `name` until the cache answers it stale (its TTL goes up, to STALE_TTL, after
    counting down): every answer on the way must be the right one."""
    deadline, last = time.monotonic() + timeout, answered(lab, name, ip)
    while (ttl := answered(lab, name, ip)) <= last or ttl != STALE_TTL:
        assert time.monotonic() < deadline, f"{name} was never answered stale"
        last = ttl


def scale(api: LabApi, replicas: int) -> None:
    api.call("PATCH", COREDNS, {"spec": {"replicas": replicas}},
             content_type="application/merge-patch+json")


def test_lookups_succeed_under_seeded_loss_to_the_node_local_cache(
        lab_factory: LabFactory) -> None:
    """5 % loss of the pod's queries arriving in its node: glibc's own retry covers each
    lost query; the same seed drops the same ones again."""
    lab, _ = dns_lab(lab_factory)
    node = lab.state.pod("default", "client").node
    names = [NAMES[i % len(NAMES)] for i in range(200)]
    assert all(ok for ok, _ in resolve_all(lab, NAMES))  # the cache holds them all
    # Any DNS query arriving in the node is a pod's (the node's own are not arriving): its
    # address there is 169.254.20.10, or the node's own in eBPF mode, where the pod's tc
    # program translated it (podlab.datapath.nodelocal).
    fault = lab.faults.loss(node, DNS, loss=0.05, seed=11)
    first = resolve_all(lab, names)
    matched, dropped = fault.counts()
    assert all(ok for ok, _ in first), [i for i, (ok, _) in enumerate(first) if not ok]
    assert dropped > 0, (matched, dropped)
    assert dropped == sum(1 for i in range(matched) if i % PERIOD in fault.drop)
    slow = {i for i, (_, elapsed) in enumerate(first) if elapsed > 0.5}  # a drop cost 1 s
    assert slow
    # Again with the same seed (the count restarts): the same lookups lose a query.
    again = lab.faults.loss(node, DNS, loss=0.05, seed=11)
    replay = resolve_all(lab, names[:100])
    assert {i for i, (_, elapsed) in enumerate(replay) if elapsed > 0.5} == \
        {i for i in slow if i < 100}
    assert again.counts()[1] == sum(1 for i in range(again.counts()[0])
                                    if i % PERIOD in again.drop)
    lab.faults.heal()
    assert again.netns not in lab.faults.active


def test_cached_names_answer_while_the_cluster_dns_is_down(lab_factory: LabFactory) -> None:
    """The coredns pods gone (scaled to none: deleted alone, they are back in about a
    second, before a 5 s entry expires): the node-local cache answers what it holds, stale;
    a name it does not hold fails; once the Deployment brings its pods back, names made
    meanwhile resolve."""
    lab, api = dns_lab(lab_factory)
    web = api.call("GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
    name = "web.default.svc.cluster.local"
    answered(lab, name, web)
    scale(api, 0)
    eventually(lambda: not any(p.startswith("coredns-") for p in api.pods("kube-system")),
               timeout=60, what="the coredns pods gone")
    until_stale(lab, name, web, timeout=CLUSTER_TTL + 30)
    status, _, _ = dig(lab, "nosuch.default.svc.cluster.local")
    assert status == "SERVFAIL"  # the outage is real: nothing else answers
    late = api.call("POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "late"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]}})
    scale(api, 2)
    eventually(lambda: (got := dig(lab, "late.default.svc.cluster.local"))[0] == "NOERROR"
               and [r[4] for r in got[1]] == [late["spec"]["clusterIP"]],
               timeout=60, what="a new Service resolved after the coredns pods came back")


def test_a_dead_vpc_resolver_serves_stale_and_fails_fast(lab_factory: LabFactory) -> None:
    """Both VPC resolvers silent (every DNS packet to them dropped in the VPC router): a
    cached external name answers stale; an uncached one gets SERVFAIL once the cache's
    forwarder gives up on both, not a client timeout; healed, it resolves."""
    lab, _ = dns_lab(lab_factory)
    answered(lab, "aliyun.com", ALIYUN)
    resolvers = f"{VPC_RESOLVERS[0]}/29"  # one fault per netns: one prefix for both
    assert all(ip_address(ip) in ip_network(resolvers) for ip in VPC_RESOLVERS)
    fault = lab.faults.loss("vpc", Match(("udp", "tcp"), resolvers, 53), loss=1.0)
    status, records, failed_in = dig(lab, "example.com")
    assert (status, records) == ("SERVFAIL", []), (status, records)
    budget = FORWARD_TIMEOUT  # the forwarder's for one query, over both resolvers
    # dig waits 10 s, glibc 5 s a try: the cache answered within its own budget instead
    assert failed_in < budget + 3, failed_in
    assert fault.counts()[1] >= len(VPC_RESOLVERS)
    until_stale(lab, "aliyun.com", ALIYUN, timeout=STALE_TTL + 30)
    lab.faults.heal()
    assert answered(lab, "example.com", EXAMPLE) > 0
