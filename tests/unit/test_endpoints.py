"""The one translation of Services and EndpointSlices into backends (`datapath.endpoints`),
and its two consumers agreeing: kube-proxy's ServicePorts and the eBPF maps' Services."""

from __future__ import annotations

from typing import Any

from podlab.cni.servicewatch import lb_service
from podlab.controllers.service_proxy import service_ports
from podlab.datapath.endpoints import (
    Endpoint,
    TargetRef,
    service_endpoints,
    slice_owner,
)


def service(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": "172.21.0.20", **spec}}


def endpoint(ip: str, **fields: Any) -> dict[str, Any]:
    return {"addresses": [ip], **fields}


def endpoint_slice(ports: list[dict[str, Any]], *endpoints: dict[str, Any],
                   name: str = "web-abc", address_type: str = "IPv4") -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": address_type, "ports": ports, "endpoints": list(endpoints)}


def test_conditions_read_as_upstream_a_missing_ready_is_ready() -> None:
    found = service_endpoints(service(ports=[{"port": 80}]), [endpoint_slice(
        [{"port": 8080}],
        endpoint("10.0.0.1"),
        endpoint("10.0.0.2", conditions={"ready": False}),
        endpoint("10.0.0.3", conditions={"ready": False, "serving": True,
                                         "terminating": True}),
        endpoint("10.0.0.4", conditions={}))])
    by_ip = {e.address: e for e in found.endpoints}
    assert [(e.ready, e.serving, e.terminating) for e in by_ip.values()] == [
        (True, True, False), (False, False, False), (False, True, True), (True, True, False)]
    assert [t.address for t in found.ports[0].ready()] == ["10.0.0.1", "10.0.0.4"]
    assert len(found.ports[0].targets) == 4


def test_target_ports_per_endpoint_from_their_slice_matched_by_name_and_protocol() -> None:
    """Pods that name the same port differently land in different slices (the
    EndpointSlice controller groups endpoints by resolved ports)."""
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"},
                         {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}])
    slices = [
        endpoint_slice([{"name": "http", "port": 8080, "protocol": "TCP"},
                        {"name": "dns", "port": 53, "protocol": "TCP"}],
                       endpoint("10.0.0.1")),
        endpoint_slice([{"name": "http", "port": 9090}, {"name": "dns", "port": 53,
                                                          "protocol": "UDP"}],
                       endpoint("10.0.0.2"), name="web-def"),
    ]
    http, dns = service_endpoints(svc, slices).ports
    assert (http.name, http.protocol, http.port) == ("http", "TCP", 80)
    assert [(t.address, t.port) for t in http.ready()] == [("10.0.0.1", 8080),
                                                            ("10.0.0.2", 9090)]
    assert [(t.address, t.port) for t in dns.ready()] == [("10.0.0.2", 53)]


def test_headless_keeps_ready_addresses_with_hostnames_even_without_ports() -> None:
    svc = service("db", clusterIP="None")
    slices = [endpoint_slice(
        [], endpoint("10.0.0.1", hostname="db-0", nodeName="n1",
                     targetRef={"kind": "Pod", "namespace": "default", "name": "db-0",
                                "uid": "u"}),
        endpoint("10.0.0.2", hostname="db-1", conditions={"ready": False}))]
    found = service_endpoints(svc, slices)
    assert found.headless
    assert found.cluster_ip is None
    assert found.ports == ()
    assert found.ready_endpoints() == (Endpoint(
        "10.0.0.1", "IPv4", hostname="db-0", node_name="n1",
        target_ref=TargetRef("Pod", "default", "db-0")),)


def test_families_duplicates_and_fqdn_slices() -> None:
    svc = service(ports=[{"port": 80}], clusterIPs=["172.21.0.20", "fd00::20"])
    slices = [
        endpoint_slice([{"port": 80}], endpoint("10.0.0.1", conditions={"ready": False})),
        endpoint_slice([{"port": 80}], endpoint("10.0.0.1"), name="web-2"),
        endpoint_slice([{"port": 80}], endpoint("fd00::1"), name="web-6",
                       address_type="IPv6"),
        endpoint_slice([{"port": 80}], endpoint("example.com"), name="web-f",
                       address_type="FQDN"),
    ]
    found = service_endpoints(svc, slices)
    assert found.cluster_ips == ("172.21.0.20", "fd00::20")
    assert [e.address for e in found.endpoints] == ["10.0.0.1", "fd00::1"]
    assert found.endpoints[0].ready, "a ready copy of an address wins over a not-ready one"
    assert [t.address for t in found.ports[0].ready()] == ["10.0.0.1"]
    assert [t.address for t in found.ports[0].ready("IPv6")] == ["fd00::1"]


def test_external_name_is_neither_headless_nor_clustered() -> None:
    found = service_endpoints(service("ext", clusterIP="", type="ExternalName",
                                      externalName="aliyun.com"), [])
    assert (found.cluster_ip, found.headless, found.external_name) == (
        None, False, "aliyun.com")


def test_a_slice_belongs_to_the_service_its_label_names() -> None:
    assert slice_owner(endpoint_slice([])) == "default/web"


def test_kube_proxy_and_the_ebpf_maps_agree_on_every_endpoint() -> None:
    """They used to disagree on an endpoint without a `ready` condition: kube-proxy
    dropped it, the eBPF maps served it."""
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"},
                         {"name": "dns", "port": 53, "protocol": "UDP"}])
    slices = [endpoint_slice([{"name": "http", "port": 8080},
                              {"name": "dns", "port": 5353, "protocol": "UDP"}],
                             endpoint("10.0.0.1", conditions={"ready": True}),
                             endpoint("10.0.0.2", conditions={"ready": False}),
                             endpoint("10.0.0.3"))]
    proxy = {(p.port, p.protocol): {(b.ip, b.port) for b in p.backends}
             for p in service_ports([svc], slices)}
    ebpf = lb_service(svc, slices)
    assert ebpf is not None
    maps = {(p.port, p.protocol): {(b.ip, b.port) for b in p.backends} for p in ebpf.ports}
    assert proxy == maps == {(80, "tcp"): {("10.0.0.1", 8080), ("10.0.0.3", 8080)},
                             (53, "udp"): {("10.0.0.1", 5353), ("10.0.0.3", 5353)}}
