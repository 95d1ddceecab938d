"""The cluster DNS and the node-local cache as the lab runs them, against the lab's API
server in process: zone data from list-and-watch, autopath for known pods (all of them at
the cluster DNS, its own node's at the cache), and the cache forwarding the cluster zone
over TCP to the cluster DNS and the rest to the VPC resolver."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podlab.cni.kubeclient import api_client
from podlab.dns import DnsRole, cluster_server, nodelocal_server, resolver_server
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.e2e.helpers import eventually
from tests.unit.kubeapi.objects import pod, service

from .helpers import DEFAULT_INTERNET_ZONE, answers, ask, rcode, udp_socks

Ask = Callable[..., Any]


@pytest.fixture
def api() -> Iterator[tuple[Store, str]]:
    store = Store(service_cidr="172.21.0.0/20")
    server = KubeApiServer(store).start()
    store.create("services", service("web", clusterIP="172.21.0.20"))
    for name, ip, node in (("client", "127.0.0.2", "n1"), ("far", "127.0.0.3", "n2")):
        made = store.create("pods", pod(name, nodeName=node))
        made["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        store.update_status("pods", made)
    yield store, server.url
    server.stop()


@pytest.fixture
def vpc() -> Iterator[int]:
    udp, tcp = udp_socks()
    role = resolver_server(DEFAULT_INTERNET_ZONE, [udp, tcp]).start()
    yield udp.getsockname()[1]
    role.stop()


def _from(ip: str, port: int, name: str, qtype: str = "A") -> Any:
    """A query sent from `ip` (any 127/8 address is this host's), as a pod would."""
    from dnslib import DNSRecord  # type: ignore[import-untyped]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        s.settimeout(5)
        s.sendto(bytes(DNSRecord.question(name, qtype).pack()), ("127.0.0.1", port))
        return DNSRecord.parse(s.recv(65535))


def _start(role: DnsRole) -> DnsRole:
    role.start()
    assert role.reader is not None
    eventually(lambda: role.reader is not None and role.reader.namespace_of("127.0.0.2"))
    return role


def test_cluster_dns_answers_services_and_autopaths_pods(api: tuple[Store, str],
                                                         vpc: int) -> None:
    _, url = api
    udp, tcp = udp_socks()
    role = _start(cluster_server(api_client(url), [udp, tcp], forward=[f"127.0.0.1:{vpc}"]))
    port = udp.getsockname()[1]
    try:
        eventually(lambda: answers(ask(port, "web.default.svc.cluster.local")) == [
            "web.default.svc.cluster.local. 5 A 172.21.0.20"])
        msg = _from("127.0.0.2", port, "aliyun.com.default.svc.cluster.local")
        assert answers(msg) == ["aliyun.com.default.svc.cluster.local. 30 CNAME aliyun.com.",
                                "aliyun.com. 30 A 203.0.113.10"]
        row = role.server.log.after(0)[-1]
        assert (row["pod"], row["hit"]) == ("default/client", "aliyun.com.")
        # no pod at this address: no autopath, the client walks on its own (a name not
        # cached yet: the cache sits before autopath, as in CoreDNS's plugin order)
        assert rcode(ask(port, "example.com.default.svc.cluster.local")) == "NXDOMAIN"
    finally:
        role.stop()


def test_nodelocal_autopaths_its_node_pods_and_forwards_the_zone_over_tcp(
        api: tuple[Store, str], vpc: int) -> None:
    _, url = api
    cu, ct = udp_socks()
    cluster = _start(cluster_server(api_client(url), [cu, ct], forward=[f"127.0.0.1:{vpc}"]))
    nu, nt = udp_socks()
    local = _start(nodelocal_server(api_client(url), "n1", f"127.0.0.1:{cu.getsockname()[1]}",
                                    [nu, nt], vpc_resolvers=[f"127.0.0.1:{vpc}"]))
    port = nu.getsockname()[1]
    try:
        assert local.reader is not None
        assert local.reader.namespace_of("127.0.0.3") is None, "a pod of another node"
        eventually(lambda: answers(_from("127.0.0.2", port, "web.default.svc.cluster.local"))
                   == ["web.default.svc.cluster.local. 5 A 172.21.0.20"])
        msg = _from("127.0.0.2", port, "aliyun.com.default.svc.cluster.local")
        assert answers(msg)[0] == "aliyun.com.default.svc.cluster.local. 30 CNAME aliyun.com."
        row = local.server.log.after(0)[-1]
        assert row["tried"][:3] == ["aliyun.com.default.svc.cluster.local.",
                                    "aliyun.com.svc.cluster.local.", "aliyun.com.cluster.local."]
        assert row["upstream"] == f"127.0.0.1:{vpc}/udp"
        cluster_rows = cluster.server.log.after(0)
        assert {r["transport"] for r in cluster_rows} == {"tcp"}
        assert not any(r["tried"] for r in cluster_rows), "the cache's address is no pod's"
        assert rcode(_from("127.0.0.3", port, "example.com.default.svc.cluster.local")) \
            == "NXDOMAIN"
    finally:
        local.stop()
        cluster.stop()
