"""The cluster zone against the Kubernetes DNS specification, from API objects read
through the shared translation (podlab.datapath.endpoints)."""

from __future__ import annotations

from typing import Any

import pytest

from podlab.datapath.endpoints import service_endpoints
from podlab.dns import ClusterZone, PodRecord

from .helpers import answers, query, rcode, run

Z = "cluster.local."


def service(name: str, cluster_ip: str | None, ports: list[dict[str, Any]],
            endpoints: list[dict[str, Any]], ns: str = "default") -> Any:
    svc = {"metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": cluster_ip or "None", "ports": ports}}
    slices = [{"metadata": {"name": f"{name}-x", "namespace": ns,
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "endpoints": endpoints,
               "ports": [{"name": p.get("name", ""), "port": p.get("targetPort", p["port"]),
                          "protocol": p.get("protocol", "TCP")} for p in ports]}]
    return service_endpoints(svc, slices)


def ep(ip: str, ready: bool | None = True, hostname: str | None = None,
       pod: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    if pod:
        e["targetRef"] = {"kind": "Pod", "namespace": "default", "name": pod}
    return e


@pytest.fixture
def zone() -> ClusterZone:
    z = ClusterZone("cluster.local", ["172.21.0.10"])
    z.set_services([
        service("web", "172.21.0.20", [{"name": "http", "port": 80, "targetPort": 8080}],
                [ep("10.0.1.5")]),
        service("db", None, [{"name": "pg", "port": 5432}],
                [ep("10.0.1.7", hostname="db-0"), ep("10.0.1.8", ready=False),
                 ep("10.0.1.9", ready=None), ep("10.0.1.6", pod="db-2")]),
    ])
    z.set_pods([PodRecord("default", "db-2", ("10.0.1.6",), "db-2", "db"),
                PodRecord("default", "client", ("10.0.1.30",))])
    return z


def ask(zone: ClusterZone, name: str, qtype: str = "A") -> Any:
    return run(zone, query(name, qtype))


def test_cluster_ip_service_a_record_ttl_5(zone: ClusterZone) -> None:
    msg = ask(zone, "web.default.svc.cluster.local.")
    assert answers(msg) == ["web.default.svc.cluster.local. 5 A 172.21.0.20"]
    assert msg.header.aa


def test_headless_service_answers_ready_endpoints_missing_ready_is_ready(
        zone: ClusterZone) -> None:
    msg = ask(zone, "db.default.svc.cluster.local.")
    assert sorted(str(rr.rdata) for rr in msg.rr) == ["10.0.1.6", "10.0.1.7", "10.0.1.9"]


def test_srv_for_a_named_port(zone: ClusterZone) -> None:
    msg = ask(zone, "_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert answers(msg) == ["_http._tcp.web.default.svc.cluster.local. 5 SRV "
                            "0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in msg.ar] == ["172.21.0.20"]


def test_headless_srv_names_each_endpoint_with_its_target_port(zone: ClusterZone) -> None:
    msg = ask(zone, "_pg._tcp.db.default.svc.cluster.local.", "SRV")
    targets = sorted(str(rr.rdata) for rr in msg.rr)
    assert targets == ["0 100 5432 10-0-1-9.db.default.svc.cluster.local.",
                       "0 100 5432 db-0.db.default.svc.cluster.local.",
                       "0 100 5432 db-2.db.default.svc.cluster.local."]


def test_hostname_subdomain_records(zone: ClusterZone) -> None:
    assert answers(ask(zone, "db-0.db.default.svc.cluster.local.")) == [
        "db-0.db.default.svc.cluster.local. 5 A 10.0.1.7"]
    # a pod whose hostname and subdomain name the headless Service (StatefulSet pods)
    assert answers(ask(zone, "db-2.db.default.svc.cluster.local.")) == [
        "db-2.db.default.svc.cluster.local. 5 A 10.0.1.6"]


def test_pod_a_record_only_for_pods_that_exist(zone: ClusterZone) -> None:
    assert answers(ask(zone, "10-0-1-30.default.pod.cluster.local.")) == [
        "10-0-1-30.default.pod.cluster.local. 5 A 10.0.1.30"]
    assert rcode(ask(zone, "10-0-1-31.default.pod.cluster.local.")) == "NXDOMAIN"


def test_ptr_for_services_endpoints_and_pods(zone: ClusterZone) -> None:
    assert answers(ask(zone, "20.0.21.172.in-addr.arpa.", "PTR")) == [
        "20.0.21.172.in-addr.arpa. 5 PTR web.default.svc.cluster.local."]
    assert answers(ask(zone, "7.1.0.10.in-addr.arpa.", "PTR")) == [
        "7.1.0.10.in-addr.arpa. 5 PTR db-0.db.default.svc.cluster.local."]
    assert answers(ask(zone, "30.1.0.10.in-addr.arpa.", "PTR")) == [
        "30.1.0.10.in-addr.arpa. 5 PTR 10-0-1-30.default.pod.cluster.local."]


def test_unknown_reverse_names_go_down_the_chain(zone: ClusterZone) -> None:
    msg = ask(zone, "1.1.168.192.in-addr.arpa.", "PTR")
    assert rcode(msg) == "REFUSED"  # the helper's next stage answered


def test_nxdomain_carries_the_zone_soa(zone: ClusterZone) -> None:
    msg = ask(zone, "nope.default.svc.cluster.local.")
    assert rcode(msg) == "NXDOMAIN"
    assert [(str(rr.rname), rr.ttl, rr.rdata.times[4]) for rr in msg.auth] == [(Z, 5, 5)]


def test_missing_type_is_nodata_with_soa(zone: ClusterZone) -> None:
    msg = ask(zone, "web.default.svc.cluster.local.", "AAAA")
    assert rcode(msg) == "NOERROR"
    assert answers(msg) == []
    assert str(msg.auth[0].rname) == Z


def test_empty_non_terminals_are_nodata_not_nxdomain(zone: ClusterZone) -> None:
    for name in ("svc.cluster.local.", "default.svc.cluster.local."):
        assert rcode(ask(zone, name)) == "NOERROR"
    assert rcode(ask(zone, "other.svc.cluster.local.")) == "NXDOMAIN"


def test_zone_apex_soa_and_ns(zone: ClusterZone) -> None:
    assert answers(ask(zone, Z, "SOA"))[0].startswith("cluster.local. 5 SOA ns.dns.cluster.local.")
    assert answers(ask(zone, Z, "NS")) == ["cluster.local. 5 NS ns.dns.cluster.local."]
    assert answers(ask(zone, "ns.dns.cluster.local.")) == ["ns.dns.cluster.local. 5 A 172.21.0.10"]


def test_external_name_is_a_cname(zone: ClusterZone) -> None:
    svc = service_endpoints({"metadata": {"name": "ext", "namespace": "default"},
                             "spec": {"type": "ExternalName", "externalName": "aliyun.com"}}, [])
    zone.set_services([svc])
    assert answers(ask(zone, "ext.default.svc.cluster.local.")) == [
        "ext.default.svc.cluster.local. 5 CNAME aliyun.com."]


def test_other_zones_go_down_the_chain(zone: ClusterZone) -> None:
    assert rcode(ask(zone, "aliyun.com.")) == "REFUSED"
