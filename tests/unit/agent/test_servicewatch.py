"""Services and EndpointSlices (as the API serves them) into the eBPF maps' Services: what
the agent of every node programs in place of kube-proxy."""

from __future__ import annotations

from typing import Any

from podlab.cni.servicewatch import ServiceWatch, lb_service
from podlab.datapath.bpf import Backend, Service, ServicePort
from podlab.datapath.nodelocal import node_local_service


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "172.21.0.10", **spec}}


def endpoint_slice(ports: list[dict[str, Any]], *endpoints: tuple[str, bool | None],
                   address_type: str = "IPv4") -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": address_type, "ports": ports,
            "endpoints": [{"addresses": [ip],
                           **({} if ready is None else {"conditions": {"ready": ready}})}
                          for ip, ready in endpoints]}


def test_named_target_ports_resolve_from_the_slice_and_only_ready_endpoints_count() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"},
                         {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}])
    slices = [endpoint_slice([{"name": "http", "port": 8080, "protocol": "TCP"},
                              {"name": "dns", "port": 5353, "protocol": "UDP"}],
                             ("10.0.0.1", True), ("10.0.0.2", False), ("10.0.0.3", None))]
    assert lb_service(svc, slices) == Service("172.21.0.10", (
        ServicePort(80, "tcp", (Backend("10.0.0.1", 8080), Backend("10.0.0.3", 8080)), "http"),
        ServicePort(53, "udp", (Backend("10.0.0.1", 5353), Backend("10.0.0.3", 5353)), "dns"),
    ), 0, "default", "web")


def test_a_port_of_another_protocol_or_name_is_not_a_backend() -> None:
    svc = service(ports=[{"name": "a", "port": 80}])
    slices = [endpoint_slice([{"name": "a", "port": 8080, "protocol": "UDP"},
                              {"name": "b", "port": 9090}], ("10.0.0.1", True))]
    assert lb_service(svc, slices) == Service("172.21.0.10", (ServicePort(80, "tcp", (), "a"),),
                                              0, "default", "web")


def test_headless_sctp_and_ipv6_slices_are_left_out() -> None:
    assert lb_service(service(clusterIP="None", ports=[{"port": 80}]), []) is None
    sctp = lb_service(service(ports=[{"port": 80, "protocol": "SCTP"}]), [])
    assert sctp is not None
    assert sctp.ports == ()
    v6 = endpoint_slice([{"port": 8080}], ("fd00::1", True), address_type="IPv6")
    only = lb_service(service(ports=[{"port": 80}]), [v6])
    assert only is not None
    assert only.ports[0].backends == ()


def test_client_ip_affinity_with_its_timeout_or_the_default() -> None:
    timed = lb_service(service(ports=[{"port": 80}], sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}), [])
    default = lb_service(service(ports=[{"port": 80}], sessionAffinity="ClientIP"), [])
    none = lb_service(service(ports=[{"port": 80}], sessionAffinity="None"), [])
    assert (timed and timed.affinity_timeout, default and default.affinity_timeout,
            none and none.affinity_timeout) == (30, 10800, 0)


class Recorder:
    def __init__(self) -> None:
        self.synced: list[list[Service]] = []

    def sync(self, services: list[Service]) -> None:
        self.synced.append(services)

    def update(self, cluster_ip: str, service: Service | None) -> None:
        raise AssertionError("no update expected")


def test_the_nodes_own_frontends_are_written_with_every_full_sync() -> None:
    """The node-local DNS address goes to the node with the API's Services; a relist,
    which writes the whole set, must not remove it."""
    writer = Recorder()
    local = node_local_service("192.168.0.1")
    watch = ServiceWatch("http://127.0.0.1:1", writer, lambda *_, **__: None, local=[local])
    web = service(ports=[{"port": 80}])
    watch.listed("services", [web], "1")
    watch.listed("endpointslices", [], "1")
    watch.listed("services", [web], "2")
    assert writer.synced == [[local, lb_service(web, [])]] * 2
    assert local == Service("169.254.20.10", (
        ServicePort(53, "udp", (Backend("192.168.0.1", 53),), "dns"),
        ServicePort(53, "tcp", (Backend("192.168.0.1", 53),), "dns-tcp"),
    ), 0, "kube-system", "node-local-dns")
