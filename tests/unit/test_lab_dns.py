"""The lab's DNS wiring without a lab: the internet zone as the VPC's resolvers load it,
the cluster DNS's objects, and `podlab dns log`'s line."""

from __future__ import annotations

from dnslib import QTYPE, RR  # type: ignore[import-untyped]

from podlab.fakecloud import default_topology
from podlab.lab.constants import KUBE_DNS_IP
from podlab.lab.dns import CLUSTER_DNS_IMAGE, cluster_dns_objects, zone_text
from podlab.lab.dns_cli import line


def test_the_internet_zone_loads_with_an_soa_per_apex() -> None:
    records = RR.fromZone(zone_text({**default_topology().internet,
                                     "txt.example": ("TXT v=spf1 -all",)}))
    by = {(str(r.rname), QTYPE[r.rtype]): r for r in records}
    assert str(by["aliyun.com.", "A"].rdata) == "106.11.248.144"
    assert str(by["www.aliyun.com.", "CNAME"].rdata) == "aliyun.com."
    assert ("aliyun.com.", "SOA") in by
    assert ("www.aliyun.com.", "SOA") not in by, "under aliyun.com, whose SOA it takes"
    assert by["txt.example.", "TXT"].rdata.data == [b"v=spf1 -all"]


def test_the_cluster_dns_is_kubeadms() -> None:
    objects = dict(cluster_dns_objects())
    deploy, svc = objects["deployments"], objects["services"]
    assert deploy["metadata"] == {"name": "coredns", "namespace": "kube-system",
                                  "labels": {"k8s-app": "kube-dns"}}
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == CLUSTER_DNS_IMAGE
    assert svc["spec"]["clusterIP"] == KUBE_DNS_IP == "172.21.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]


def test_a_log_line_names_the_pod_and_the_walk() -> None:
    row = {"seq": 1, "time": 0.0, "client": "192.168.0.5", "pod": "default/client",
           "transport": "udp", "qname": "web.default.svc.cluster.local.", "qtype": "A",
           "tried": ["a.default.svc.cluster.local.", "a."], "hit": "a.", "cache": "miss",
           "upstream": "172.21.0.10/tcp", "rcode": "NOERROR", "ms": 1.5,
           "server": "nodelocal/n1"}
    text = line(row)
    assert "nodelocal/n1 default/client udp A web.default.svc.cluster.local. NOERROR" in text
    assert text.endswith("via 172.21.0.10/tcp autopath a.default.svc.cluster.local. → "
                         "a. (hit)")
    assert "192.168.0.5" in line({**row, "pod": None})
