"""CoreDNS's own autopath test cases (plugin/autopath/autopath_test.go), ported as cases,
and kubernetes' AutoPath (the search path from the client's pod, `pods verified`)."""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import RCODE  # type: ignore[import-untyped]

from podlab.dns import Autopath, Metrics, Request
from podlab.dns.autopath import first_in_search_path

from .helpers import answers, query, rcode, run, zone_handler

CASES = {"b.example.org.": RCODE.NXDOMAIN, "b.com.": RCODE.NOERROR,
         "a.example.com.": RCODE.NOERROR}


class _Fixed(Autopath):
    """CoreDNS's test sets the plugin's search path directly (no kubernetes)."""

    def search_path(self, client_ip: str, name: str) -> list[str]:
        return ["example.org.", "example.com.", "com.", ""]


def test_coredns_search_path_expansion() -> None:
    msg = run(_Fixed(), query("b.example.org."), zone_handler(CASES))
    # the CNAME sits *before* the rest of the answer, with the first record's TTL
    assert answers(msg) == ["b.example.org. 3600 CNAME b.com.", "b.com. 3600 A 127.0.0.53"]
    assert str(msg.q.qname) == "b.example.org."
    assert rcode(msg) == "NOERROR"


def test_coredns_no_search_path_expansion() -> None:
    msg = run(_Fixed(), query("a.example.com."), zone_handler(CASES))
    assert answers(msg) == ["a.example.com. 3600 A 127.0.0.53"]


def test_coredns_no_answer_returns_the_first_reply() -> None:
    # c.example.org: every element fails (SERVFAIL: no client write); the first reply goes
    msg = run(_Fixed(), query("c.example.org."), zone_handler(CASES))
    assert rcode(msg) == "SERVFAIL"
    assert answers(msg) == []


@pytest.mark.parametrize(("qname", "expected"), [
    ("google.com.", False), ("default.svc.cluster.local.", True),
    ("a.default.svc.cluster.local.", True), ("a.b.svc.cluster.local.", False)])
def test_coredns_in_search_path(qname: str, expected: bool) -> None:
    search = ["default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."]
    assert first_in_search_path(qname, search) is expected


KUBE = {"web.default.svc.cluster.local.": RCODE.NOERROR,
        "aliyun.com.default.svc.cluster.local.": RCODE.NXDOMAIN,
        "aliyun.com.svc.cluster.local.": RCODE.NXDOMAIN,
        "aliyun.com.cluster.local.": RCODE.NXDOMAIN,
        "aliyun.com.corp.example.": RCODE.NXDOMAIN,
        "aliyun.com.": RCODE.NOERROR,
        "nope.default.svc.cluster.local.": RCODE.NXDOMAIN,
        "nope.svc.cluster.local.": RCODE.NXDOMAIN, "nope.cluster.local.": RCODE.NXDOMAIN,
        "nope.corp.example.": RCODE.NXDOMAIN, "nope.": RCODE.NXDOMAIN}
PODS = {"10.0.0.9": "default"}


def kube(metrics: Metrics | None = None) -> Autopath:
    return Autopath("cluster.local", PODS.get, ["corp.example"], metrics)


def test_kubernetes_search_path_order() -> None:
    assert kube().search_path("10.0.0.9", "x.default.svc.cluster.local.") == [
        "default.svc.cluster.local.", "svc.cluster.local.", "cluster.local.", "corp.example.",
        ""]


def test_external_name_walks_to_the_bare_name_and_is_counted() -> None:
    metrics = Metrics()
    req = query("aliyun.com.default.svc.cluster.local.")
    msg = run(kube(metrics), req, zone_handler(KUBE, ttl=300))
    assert answers(msg) == ["aliyun.com.default.svc.cluster.local. 300 CNAME aliyun.com.",
                            "aliyun.com. 300 A 127.0.0.53"]
    assert str(msg.q.qname) == "aliyun.com.default.svc.cluster.local."
    assert req.trace.tried == ["aliyun.com.default.svc.cluster.local.",
                               "aliyun.com.svc.cluster.local.", "aliyun.com.cluster.local.",
                               "aliyun.com.corp.example.", "aliyun.com."]
    assert req.trace.hit == "aliyun.com."
    assert metrics.registry.get_sample_value("coredns_autopath_success_total",
                                             {"server": "dns://:53"}) == 1


def test_a_hit_on_the_first_element_has_no_cname() -> None:
    msg = run(kube(), query("web.default.svc.cluster.local."), zone_handler(KUBE))
    assert answers(msg) == ["web.default.svc.cluster.local. 3600 A 127.0.0.53"]


def test_every_element_missing_returns_the_first_reply() -> None:
    msg = run(kube(), query("nope.default.svc.cluster.local."), zone_handler(KUBE))
    assert rcode(msg) == "NXDOMAIN"
    assert str(msg.q.qname) == "nope.default.svc.cluster.local."
    assert str(msg.auth[0].rname) == "example.org."


def test_a_client_that_is_no_pod_is_not_autopathed() -> None:
    req = query("aliyun.com.default.svc.cluster.local.", client="10.9.9.9")
    msg = run(kube(), req, zone_handler(KUBE))
    assert rcode(msg) == "NXDOMAIN"
    assert req.trace.tried == []


def test_another_namespace_in_the_name_is_not_autopathed() -> None:
    req = query("aliyun.com.other.svc.cluster.local.")
    run(kube(), req, zone_handler(KUBE))
    assert req.trace.tried == []


def test_names_in_other_zones_are_not_autopathed() -> None:
    req = query("aliyun.com.")
    msg = run(kube(), req, zone_handler(KUBE))
    assert answers(msg) == ["aliyun.com. 3600 A 127.0.0.53"]
    assert req.trace.tried == []


def test_a_query_equal_to_the_first_element_is_servfail_as_in_coredns() -> None:
    # dnsutil.TrimZone overshoots on the element itself and CoreDNS answers SERVFAIL
    msg = run(kube(), query("default.svc.cluster.local."), zone_handler(KUBE))
    assert rcode(msg) == "SERVFAIL"


def test_nodata_answers_without_cname() -> None:
    """AAAA of an IPv4-only Service: NOERROR with no records stops the walk at once."""
    async def nodata(req: Request) -> Any:
        return req.msg.reply()
    req = query("web.default.svc.cluster.local.", "AAAA")
    msg = run(kube(), req, nodata)
    assert rcode(msg) == "NOERROR"
    assert answers(msg) == []
    assert req.trace.tried == ["web.default.svc.cluster.local."]


def test_case_of_the_query_is_kept() -> None:
    msg = run(kube(), query("AliYun.com.default.svc.cluster.local."), zone_handler(KUBE))
    assert str(msg.q.qname) == "AliYun.com.default.svc.cluster.local."
    assert answers(msg)[0].startswith("AliYun.com.default.svc.cluster.local. ")
