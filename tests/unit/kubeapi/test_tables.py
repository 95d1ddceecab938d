"""Server-side table columns and the AGE formatting kubectl users expect."""

from __future__ import annotations

from typing import Any

import pytest

from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.tables import human_duration, table


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (0, "0s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
    (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"),
    (100 * 86400, "100d"), (3 * 365 * 86400, "3y"), (9 * 365 * 86400, "9y")])
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def cells(resource: str, obj: dict[str, Any]) -> dict[str, object]:
    found = table(BUILTIN.strategy(resource).columns, [obj], include_object="None")
    assert "object" not in found["rows"][0]
    return dict(zip([c["name"] for c in found["columnDefinitions"]], found["rows"][0]["cells"],
                    strict=True))


def test_endpoints_and_nodes_columns() -> None:
    ep = {"metadata": {"name": "web"}, "subsets": [{
        "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}]}
    assert cells("endpoints", ep)["Endpoints"] == \
        "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    node = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.0.5"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0"}}}
    row = cells("nodes", node)
    assert (row["Status"], row["Roles"], row["Version"], row["Internal-IP"]) == (
        "Ready", "worker", "v1.32.0", "192.168.0.5")


def test_services_of_every_type() -> None:
    lb = {"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "clusterIP": "172.21.0.9",
        "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}]}}
    row = cells("services", lb)
    assert (row["External-IP"], row["Port(s)"]) == ("<pending>", "443:30443/TCP")
    ext = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName",
                                                 "externalName": "example.com"}}
    assert cells("services", ext)["External-IP"] == "example.com"
    netpol = {"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}
    assert cells("networkpolicies", netpol)["Pod-Selector"] == "<none>"
