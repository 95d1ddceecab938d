"""NetworkPolicy: upstream's defaults and validation (ValidateNetworkPolicy), with 422
causes that name the field as a real API server does."""

from __future__ import annotations

from typing import Any

import pytest

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.wire import AS_TABLE, request, table_rows

GROUP_PATH = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"


def policy(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, **spec}}


def port(**fields: Any) -> dict[str, Any]:
    """A policy whose one ingress rule has the one port `fields`."""
    return {"ingress": [{"ports": [fields]}]}


def peer(**fields: Any) -> dict[str, Any]:
    """A policy whose one ingress rule has the one peer `fields`."""
    return {"ingress": [{"from": [fields]}]}


def selector(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"matchExpressions": list(expressions)}


def block(cidr: str, *excepted: str) -> dict[str, Any]:
    return {"ipBlock": {"cidr": cidr, "except": list(excepted)}}


PODS = {"podSelector": {"matchLabels": {"role": "client"}}}
NAMESPACES = {"namespaceSelector": {"matchLabels": {"team": "a"}}}
PORT = "spec.ingress[0].ports[0]"
PEER = "spec.ingress[0].from[0]"

# (what is wrong, spec, the cause's field, its reason, the start of its message)
INVALID = [
    ("label value", {"podSelector": {"matchLabels": {"app": "-web-"}}},
     "spec.podSelector.matchLabels", "FieldValueInvalid", 'Invalid value: "-web-": a valid label'),
    ("label key", {"podSelector": {"matchLabels": {"a b": "x"}}},
     "spec.podSelector.matchLabels", "FieldValueInvalid", 'Invalid value: "a b": name part'),
    ("In without values", {"podSelector": selector({"key": "app", "operator": "In"})},
     "spec.podSelector.matchExpressions[0].values", "FieldValueRequired",
     "Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    ("NotIn without values", {"podSelector": selector(
        {"key": "app", "operator": "NotIn", "values": []})},
     "spec.podSelector.matchExpressions[0].values", "FieldValueRequired", "Required value"),
    ("Exists with values", {"podSelector": selector(
        {"key": "app", "operator": "Exists", "values": ["web"]})},
     "spec.podSelector.matchExpressions[0].values", "FieldValueForbidden",
     "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    ("DoesNotExist with values", {"podSelector": selector(
        {"key": "app", "operator": "DoesNotExist", "values": ["web"]})},
     "spec.podSelector.matchExpressions[0].values", "FieldValueForbidden", "Forbidden"),
    ("unknown operator", {"podSelector": selector(
        {"key": "app", "operator": "Equals", "values": ["web"]})},
     "spec.podSelector.matchExpressions[0].operator", "FieldValueInvalid",
     'Invalid value: "Equals": not a valid selector operator'),
    ("expression key", {"podSelector": selector({"key": "-app", "operator": "Exists"})},
     "spec.podSelector.matchExpressions[0].key", "FieldValueInvalid", 'Invalid value: "-app"'),
    ("expression value", {"podSelector": selector(
        {"key": "app", "operator": "In", "values": ["ok", "not ok"]})},
     "spec.podSelector.matchExpressions[0].values[1]", "FieldValueInvalid",
     'Invalid value: "not ok"'),
    ("policy type", {"policyTypes": ["Ingress", "Sideways"]}, "spec.policyTypes[1]",
     "FieldValueNotSupported",
     'Unsupported value: "Sideways": supported values: "Ingress", "Egress"'),
    ("three policy types", {"policyTypes": ["Ingress", "Egress", "Ingress"]},
     "spec.policyTypes", "FieldValueInvalid", "Invalid value: []string{\"Ingress\", "
     "\"Egress\", \"Ingress\"}: may not specify more than two policyTypes"),
    ("protocol", port(protocol="ICMP", port=80), f"{PORT}.protocol", "FieldValueNotSupported",
     'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
    ("port 0", port(port=0), f"{PORT}.port", "FieldValueInvalid",
     "Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("port 65536", port(port=65536), f"{PORT}.port", "FieldValueInvalid",
     "Invalid value: 65536: must be between 1 and 65535, inclusive"),
    ("named port with _", port(port="ht_tp"), f"{PORT}.port", "FieldValueInvalid",
     'Invalid value: "ht_tp": must contain only alpha-numeric characters (a-z, 0-9), and '
     "hyphens (-)"),
    ("named port of digits", port(port="80"), f"{PORT}.port", "FieldValueInvalid",
     'Invalid value: "80": must contain at least one letter (a-z)'),
    ("named port too long", port(port="a-very-long-port-name"), f"{PORT}.port",
     "FieldValueInvalid", 'Invalid value: "a-very-long-port-name": must be no more than 15'),
    ("named port with --", port(port="h--p"), f"{PORT}.port", "FieldValueInvalid",
     'Invalid value: "h--p": must not contain consecutive hyphens'),
    ("named port ending in -", port(port="http-"), f"{PORT}.port", "FieldValueInvalid",
     'Invalid value: "http-": must not begin or end with a hyphen'),
    ("endPort below port", port(port=8080, endPort=80), f"{PORT}.endPort", "FieldValueInvalid",
     "Invalid value: 80: must be greater than or equal to `port`"),
    ("endPort 65536", port(port=80, endPort=65536), f"{PORT}.endPort", "FieldValueInvalid",
     "Invalid value: 65536: must be between 1 and 65535, inclusive"),
    ("endPort with a named port", port(port="http", endPort=90), f"{PORT}.endPort",
     "FieldValueInvalid", "Invalid value: 90: may not be specified when `port` is non-numeric"),
    ("endPort without port", port(endPort=90), f"{PORT}.endPort", "FieldValueInvalid",
     "Invalid value: 90: may not be specified when `port` is not specified"),
    ("empty peer", peer(), PEER, "FieldValueRequired", "Required value: must specify a peer"),
    ("ipBlock and podSelector", peer(**block("10.0.0.0/8"), **PODS), PEER,
     "FieldValueForbidden", "Forbidden: may not specify both ipBlock and another peer"),
    ("ipBlock and namespaceSelector", peer(**block("10.0.0.0/8"), **NAMESPACES), PEER,
     "FieldValueForbidden", "Forbidden: may not specify both ipBlock and another peer"),
    ("peer namespaceSelector", peer(namespaceSelector={"matchLabels": {"team": "a b"}}),
     f"{PEER}.namespaceSelector.matchLabels", "FieldValueInvalid", 'Invalid value: "a b"'),
    ("peer podSelector", peer(podSelector=selector({"key": "x", "operator": "In"})),
     f"{PEER}.podSelector.matchExpressions[0].values", "FieldValueRequired", "Required value"),
    ("ipBlock without cidr", peer(ipBlock={}), f"{PEER}.ipBlock.cidr", "FieldValueRequired",
     "Required value"),
    ("cidr prefix", peer(**block("10.0.0.0/33")), f"{PEER}.ipBlock.cidr", "FieldValueInvalid",
     'Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
     "2001:db8::/64)"),
    ("cidr without prefix", peer(**block("10.0.0.1")), f"{PEER}.ipBlock.cidr",
     "FieldValueInvalid", 'Invalid value: "10.0.0.1": must be a valid CIDR value'),
    ("cidr as netmask", peer(**block("10.0.0.0/255.0.0.0")), f"{PEER}.ipBlock.cidr",
     "FieldValueInvalid", "Invalid value: \"10.0.0.0/255.0.0.0\": must be a valid CIDR"),
    ("except outside cidr", peer(**block("10.0.0.0/16", "10.1.0.0/24")),
     f"{PEER}.ipBlock.except[0]", "FieldValueInvalid",
     'Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`'),
    ("except equal to cidr", peer(**block("10.0.0.0/16", "10.0.0.0/24", "10.0.0.0/16")),
     f"{PEER}.ipBlock.except[1]", "FieldValueInvalid", "Invalid value: \"10.0.0.0/16\": must "
     "be a strict subset of `cidr`"),
    ("except of the other family", peer(**block("10.0.0.0/8", "fd00::/64")),
     f"{PEER}.ipBlock.except[0]", "FieldValueInvalid", "Invalid value: \"fd00::/64\": must be "
     "a strict subset of `cidr`"),
    ("except not a CIDR", peer(**block("10.0.0.0/8", "10.0.0.300/24")),
     f"{PEER}.ipBlock.except[0]", "FieldValueInvalid", "Invalid value: \"10.0.0.300/24\": "
     "must be a valid CIDR value"),
    ("egress peer", {"egress": [{"to": [{}]}]}, "spec.egress[0].to[0]", "FieldValueRequired",
     "Required value: must specify a peer"),
    ("egress port", {"egress": [{"ports": [{"port": 53, "endPort": 52}]}]},
     "spec.egress[0].ports[0].endPort", "FieldValueInvalid",
     "Invalid value: 52: must be greater than or equal to `port`"),
]


@pytest.mark.parametrize(("spec", "field", "reason", "message"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_an_invalid_policy_is_refused_with_upstreams_cause(
        store: Store, spec: dict[str, Any], field: str, reason: str, message: str) -> None:
    with pytest.raises(ApiError) as err:
        store.create("networkpolicies", policy(**spec))
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert [(c["field"], c["reason"]) for c in err.value.causes] == [(field, reason)]
    assert err.value.causes[0]["message"].startswith(message)
    assert store.list("networkpolicies")[0] == []  # and nothing was stored


@pytest.mark.parametrize("name", ["Web", "web_policy", "-web", "a" * 254])
def test_the_name_is_a_dns_subdomain(store: Store, name: str) -> None:
    with pytest.raises(ApiError) as err:
        store.create("networkpolicies", policy(name))
    assert [c["field"] for c in err.value.causes] == ["metadata.name"]


def test_a_policy_upstream_accepts_is_stored_as_given_plus_defaults(store: Store) -> None:
    spec: dict[str, Any] = {
        "podSelector": selector({"key": "app", "operator": "In", "values": ["web", "api"]},
                                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                                {"key": "canary", "operator": "DoesNotExist"},
                                {"key": "app", "operator": "Exists"}),
        "ingress": [{"from": [{**PODS, **NAMESPACES}, PODS, NAMESPACES,
                              block("10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24"),
                              block("10.1.2.3/8"),  # host bits set: ParseCIDR takes it
                              block("fd00::/48", "fd00:0:0:1::/64")],
                     "ports": [{"port": 80}, {"port": "http"}, {"port": 8000, "endPort": 8080},
                               {"port": 53, "endPort": 53, "protocol": "UDP"},
                               {"protocol": "SCTP"}, {}]},
                    {}],  # a rule with neither ports nor peers: everything
        "egress": [{"to": [NAMESPACES], "ports": [{"port": 53, "protocol": "UDP"}]}],
    }
    created = store.create("networkpolicies", policy("web.allow", **spec))["spec"]
    assert created["policyTypes"] == ["Ingress", "Egress"]
    assert created["podSelector"] == spec["podSelector"]
    assert created["ingress"][0]["from"] == spec["ingress"][0]["from"]
    assert [(p.get("port"), p.get("endPort"), p["protocol"])
            for p in created["ingress"][0]["ports"]] == [
        (80, None, "TCP"), ("http", None, "TCP"), (8000, 8080, "TCP"), (53, 53, "UDP"),
        (None, None, "SCTP"), (None, None, "TCP")]
    assert created["ingress"][1] == {}
    assert created["egress"] == spec["egress"]


@pytest.mark.parametrize(("spec", "policy_types"), [
    ({}, ["Ingress"]),
    ({"egress": [{}]}, ["Ingress", "Egress"]),
    ({"egress": [], "policyTypes": []}, ["Ingress"]),  # an empty list is defaulted too
    ({"policyTypes": ["Egress"]}, ["Egress"]),
    ({"ingress": [{}], "policyTypes": ["Egress", "Ingress"]}, ["Egress", "Ingress"]),
    ({"policyTypes": ["Ingress", "Ingress"]}, ["Ingress", "Ingress"]),  # upstream takes it
])
def test_policy_types_default_from_the_rules(store: Store, spec: dict[str, Any],
                                             policy_types: list[str]) -> None:
    created = store.create("networkpolicies", policy(**spec))
    assert created["spec"]["policyTypes"] == policy_types


def test_an_absent_pod_selector_selects_every_pod(store: Store) -> None:
    bare = {"metadata": {"name": "deny-all"}}
    assert store.create("networkpolicies", bare)["spec"] == {
        "podSelector": {}, "policyTypes": ["Ingress"]}


def test_egress_ports_default_to_tcp(store: Store) -> None:
    created = store.create("networkpolicies", policy(egress=[{"ports": [{"port": 443}]}]))
    assert created["spec"]["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_updates_and_patches_are_validated(store: Store) -> None:
    created = store.create("networkpolicies", policy(**port(port=80)))
    created["spec"]["ingress"][0]["ports"][0]["endPort"] = 79
    with pytest.raises(ApiError) as err:
        store.update("networkpolicies", created)
    assert [c["field"] for c in err.value.causes] == [f"{PORT}.endPort"]
    with pytest.raises(ApiError) as err:
        store.patch("networkpolicies", "default", "web", {"spec": {"policyTypes": ["Up"]}},
                    "merge")
    assert [c["field"] for c in err.value.causes] == ["spec.policyTypes[0]"]
    stored = store.get("networkpolicies", "default", "web")
    assert stored["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_the_server_sends_a_422_status_and_upstreams_columns(store: Store) -> None:
    server = KubeApiServer(store).start()
    try:
        code, status = request(server, "POST", GROUP_PATH,
                               policy(**port(port=8080, endPort=80)))
        store.create("networkpolicies", policy("all"))
        store.create("networkpolicies", {"metadata": {"name": "deny"}})
        _, found = request(server, "GET", GROUP_PATH, headers=AS_TABLE)
    finally:
        server.stop()
    assert (code, status["kind"], status["reason"]) == (422, "Status", "Invalid")
    assert status["message"] == (
        'NetworkPolicy.networking.k8s.io "web" is invalid: spec.ingress[0].ports[0].endPort: '
        "Invalid value: 80: must be greater than or equal to `port`")
    assert status["details"] == {"name": "web", "group": "networking.k8s.io",
                                 "kind": "NetworkPolicy", "causes": [{
                                     "reason": "FieldValueInvalid",
                                     "field": "spec.ingress[0].ports[0].endPort",
                                     "message": "Invalid value: 80: must be greater than or "
                                                "equal to `port`"}]}
    assert [c["name"] for c in found["columnDefinitions"]] == ["Name", "Pod-Selector", "Age"]
    assert [(r["Name"], r["Pod-Selector"]) for r in table_rows(found)] == [
        ("all", "app=web"), ("deny", "<none>")]
