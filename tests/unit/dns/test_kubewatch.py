"""The watch's reader: API objects in, the zone and the pod lookups out."""

from __future__ import annotations

from typing import Any

from podlab.dns import ClusterZone
from podlab.dns.kubewatch import ZoneReader

from .helpers import answers, query, rcode, run


def pod(name: str, ip: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "prod"}, "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


SVC = {"metadata": {"name": "db", "namespace": "prod"},
       "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}
SLICE = {"metadata": {"name": "db-abc", "namespace": "prod",
                      "labels": {"kubernetes.io/service-name": "db"}},
         "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432}],
         "endpoints": [{"addresses": ["10.0.2.4"],
                        "targetRef": {"kind": "Pod", "namespace": "prod", "name": "db-0"}}]}


def test_pods_by_address_without_host_network_or_finished_pods() -> None:
    reader = ZoneReader()
    done = pod("job", "10.0.2.6")
    done["status"]["phase"] = "Succeeded"
    reader.listed("pods", [pod("a", "10.0.2.5"), pod("node-agent", "192.168.0.10",
                                                      hostNetwork=True), done], "1")
    assert (reader.namespace_of("10.0.2.5"), reader.pod_of("10.0.2.5")) == ("prod", "prod/a")
    assert reader.namespace_of("192.168.0.10") is None
    assert reader.namespace_of("10.0.2.6") is None
    reader.changed("pods", "DELETED", pod("a", "10.0.2.5"))
    assert reader.namespace_of("10.0.2.5") is None


def test_services_slices_and_pods_become_the_zone() -> None:
    zone = ClusterZone()
    reader = ZoneReader(zone)
    reader.listed("services", [SVC], "1")
    reader.listed("endpointslices", [SLICE], "1")
    reader.listed("pods", [pod("db-0", "10.0.2.4", hostname="db-0", subdomain="db")], "1")
    assert answers(run(zone, query("db-0.db.prod.svc.cluster.local."))) == [
        "db-0.db.prod.svc.cluster.local. 5 A 10.0.2.4"]
    reader.changed("endpointslices", "DELETED", SLICE)
    assert rcode(run(zone, query("db-0.db.prod.svc.cluster.local."))) == "NXDOMAIN"
    assert rcode(run(zone, query("db.prod.svc.cluster.local."))) == "NOERROR"  # no endpoints
