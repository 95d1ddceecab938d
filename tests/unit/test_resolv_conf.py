"""A pod's resolv.conf, hostname and /etc/hosts as kubelet makes them (podlab.lab.resolv),
and the API refusing a dnsConfig kubelet could not apply (upstream's validatePodDNSConfig)."""

from __future__ import annotations

from typing import Any

import pytest

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.store import Store
from podlab.lab.constants import KUBE_DNS_IP, NODE_LOCAL_DNS_IP, VPC_RESOLVERS
from podlab.lab.resolv import ResolvConf, pod_hostname, pod_hosts, pod_resolv_conf
from tests.unit.kubeapi.objects import pod

NODE = ResolvConf(VPC_RESOLVERS, (), ("timeout:2", "rotate"))
SEARCH = ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")


def conf(**spec: Any) -> ResolvConf:
    return pod_resolv_conf(pod("web", "shop", **spec), NODE_LOCAL_DNS_IP, NODE)


def test_constants_follow_kubeadm_and_nodelocaldns() -> None:
    assert (KUBE_DNS_IP, NODE_LOCAL_DNS_IP) == ("172.21.0.10", "169.254.20.10")


def test_cluster_first_is_the_default_and_renders_as_containerd_writes_it() -> None:
    assert conf() == conf(dnsPolicy="ClusterFirst")
    assert conf().render() == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 169.254.20.10\n"
        "options ndots:5\n")


def test_cluster_first_appends_the_nodes_search_without_repeats() -> None:
    node = ResolvConf(VPC_RESOLVERS, ("cluster.local", "corp.example"), ("rotate",))
    got = pod_resolv_conf(pod("web", "shop"), KUBE_DNS_IP, node)
    assert got == ResolvConf((KUBE_DNS_IP,), (*SEARCH, "corp.example"), ("ndots:5",))


def test_without_a_cluster_dns_or_on_the_host_network_cluster_first_is_the_nodes() -> None:
    assert pod_resolv_conf(pod("web", "shop"), "", NODE) == NODE
    assert conf(hostNetwork=True) == NODE
    assert conf(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet").searches == SEARCH


def test_default_is_the_nodes_resolv_conf() -> None:
    assert conf(dnsPolicy="Default") == NODE
    assert conf(dnsPolicy="Default").render() == (
        "nameserver 100.100.2.136\nnameserver 100.100.2.138\noptions timeout:2 rotate\n")


def test_none_is_the_dns_config_alone() -> None:
    got = conf(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.1.1.1"], "searches": ["example.com"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert got.render() == "search example.com\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"


def test_dns_config_merges_into_cluster_first_as_kubelet_does() -> None:
    got = conf(dnsConfig={"nameservers": [NODE_LOCAL_DNS_IP, "10.0.0.2"],
                          "searches": ["svc.cluster.local", "corp.example"],
                          "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]})
    assert got == ResolvConf((NODE_LOCAL_DNS_IP, "10.0.0.2"), (*SEARCH, "corp.example"),
                             ("ndots:1", "edns0"))


def test_merged_lists_are_cut_to_kubelets_limits() -> None:
    many = [f"d{i}.example" for i in range(40)]
    got = conf(dnsConfig={"nameservers": ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
                          "searches": many})
    assert got.nameservers == (NODE_LOCAL_DNS_IP, "10.0.0.2", "10.0.0.3")
    assert got.searches == (*SEARCH, *many[:29])
    long = ["a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63]  # 255 characters
    assert conf(dnsConfig={"searches": long}).searches == SEARCH
    wide = [f"{i:02d}" + "x" * 60 + ".example" for i in range(29)]  # 70 characters each
    fitted = conf(dnsConfig={"searches": wide}).searches
    assert len(" ".join(fitted)) <= 2048 < len(" ".join((*fitted, wide[len(fitted) - 3])))
    assert fitted == (*SEARCH, *wide[:len(fitted) - 3])


def test_a_resolv_conf_is_read_as_kubelet_reads_its_own() -> None:
    text = ("# by ECS\nnameserver 100.100.2.136 ; first\nsearch old.example\n"
            "search corp.example. . lab.example\nnameserver 100.100.2.138\n"
            "options timeout:2\noptions rotate\nbogus\n")
    assert ResolvConf.parse(text) == ResolvConf(
        VPC_RESOLVERS, ("corp.example", "lab.example"), ("timeout:2", "rotate"))


def test_the_hostname_is_spec_hostname_else_the_name_cut_to_63() -> None:
    assert pod_hostname(pod("web-0")) == "web-0"
    assert pod_hostname(pod("web-0", hostname="db")) == "db"
    assert pod_hostname(pod("x" * 62 + "-yz")) == "x" * 62


def test_hosts_has_the_fqdn_first_for_a_pod_with_a_subdomain() -> None:
    hosts = pod_hosts(pod("web-0", "shop", subdomain="web"), ["10.0.0.7"])
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert hosts.endswith("\n10.0.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n")
    assert pod_hosts(pod("web-0", "shop"), ["10.0.0.7"]).endswith("\n10.0.0.7\tweb-0\n")
    aliased = pod_hosts(pod("web-0", hostAliases=[{"ip": "10.1.1.1",
                                                   "hostnames": ["a.example", "b"]}]), [])
    assert aliased.endswith("\n\n# Entries added by HostAliases.\n10.1.1.1\ta.example\tb\n")


def test_a_pod_is_stored_with_cluster_first() -> None:
    stored = Store().create("pods", pod("web", dnsPolicy=""))
    assert stored["spec"]["dnsPolicy"] == "ClusterFirst"


INVALID = [
    ("policy", {"dnsPolicy": "Cluster"}, "spec.dnsPolicy", "FieldValueNotSupported"),
    ("none-without-config", {"dnsPolicy": "None"}, "spec.dnsConfig", "FieldValueRequired"),
    ("none-without-nameserver", {"dnsPolicy": "None", "dnsConfig": {"searches": ["a.b"]}},
     "spec.dnsConfig.nameservers", "FieldValueRequired"),
    ("four-nameservers", {"dnsConfig": {"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3",
                                                        "1.1.1.4"]}},
     "spec.dnsConfig.nameservers", "FieldValueInvalid"),
    ("nameserver-not-ip", {"dnsConfig": {"nameservers": ["dns.example"]}},
     "spec.dnsConfig.nameservers[0]", "FieldValueInvalid"),
    ("33-searches", {"dnsConfig": {"searches": [f"d{i}.example" for i in range(33)]}},
     "spec.dnsConfig.searches", "FieldValueInvalid"),
    ("search-chars", {"dnsConfig": {"searches": [f"{i:02d}" + "x" * 60 + ".ex" for i in
                                                 range(32)]}},
     "spec.dnsConfig.searches", "FieldValueInvalid"),
    ("search-syntax", {"dnsConfig": {"searches": ["Bad_Domain"]}},
     "spec.dnsConfig.searches[0]", "FieldValueInvalid"),
    ("option-name", {"dnsConfig": {"options": [{"value": "2"}]}},
     "spec.dnsConfig.options[0]", "FieldValueRequired"),
    ("hostname", {"hostname": "Web.0"}, "spec.hostname", "FieldValueInvalid"),
    ("subdomain", {"subdomain": "a.b"}, "spec.subdomain", "FieldValueInvalid"),
    ("alias-ip", {"hostAliases": [{"ip": "x", "hostnames": ["a"]}]},
     "spec.hostAliases[0].ip", "FieldValueInvalid"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_the_api_refuses_dns_settings_kubelet_could_not_apply(
        spec: dict[str, Any], field: str, reason: str) -> None:
    store = Store()
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("web", **spec))
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert [(c["field"], c["reason"]) for c in err.value.causes] == [(field, reason)]


def test_the_api_takes_dns_settings_upstream_takes() -> None:
    store = Store()
    store.create("pods", pod("a", dnsPolicy="None", dnsConfig={
        "nameservers": ["1.1.1.1", "2606:4700::1111", "8.8.8.8"],
        "searches": ["example.com.", *(f"d{i}.example" for i in range(31))],
        "options": [{"name": "ndots", "value": "2"}]}))
    store.create("pods", pod("b", hostname="db-0", subdomain="db", dnsPolicy="Default"))
