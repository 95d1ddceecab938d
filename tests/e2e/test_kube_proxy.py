"""kube-proxy's iptables and nftables Service datapaths, on a lab node, with real traffic."""

from __future__ import annotations

import json
import math

import pytest

from podlab.datapath.kubeproxy import MODES, Backend, KubeProxy, ServicePort
from podlab.fakecloud import default_topology
from podlab.lab import Lab
from podlab.lab.pytest_plugin import LabFactory

pytestmark = pytest.mark.kernel("iptables", "nftables")
VIP = "172.21.0.10"
CLIENT = """
import collections, json, socket, sys, urllib.request
seen = collections.Counter()
for _ in range({n}):
    try:
        seen[urllib.request.urlopen("http://{vip}:80/hostname", timeout=2).read().decode()] += 1
    except OSError as e:
        seen[type(e).__name__] += 1
print(json.dumps(seen))
"""


def hits(lab: Lab, n: int) -> dict[str, int]:
    out = lab.exec("n1", ["python3", "-c", CLIENT.format(n=n, vip=VIP)]).stdout
    counts: dict[str, int] = json.loads(out)
    return counts


def web(lab: Lab, nodes: list[str]) -> ServicePort:
    backends = tuple(Backend(lab.state.node(n).primary_ip, 8080) for n in nodes)
    return ServicePort("default", "web", "http", "tcp", VIP, 80, backends)


@pytest.fixture
def four_nodes(lab_factory: LabFactory) -> Lab:
    lab: Lab = lab_factory(default_topology(nodes=4))
    for node in ("n2", "n3", "n4"):
        lab.start_workload(node, node, http=[8080])
    return lab


@pytest.mark.parametrize("mode", MODES)
def test_a_service_spreads_connections_evenly(four_nodes: Lab, mode: str) -> None:
    KubeProxy(mode, four_nodes.state.node("n1").netns).sync([web(four_nodes, ["n2", "n3", "n4"])])
    counts = hits(four_nodes, 300)
    assert set(counts) == {"n2", "n3", "n4"}
    # Chi-square against uniform, 2 degrees of freedom: p = exp(-stat / 2).
    stat = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert math.exp(-stat / 2) > 1e-3, counts


@pytest.mark.parametrize("mode", MODES)
def test_sync_follows_endpoints_and_rejects_when_none(four_nodes: Lab, mode: str) -> None:
    proxy = KubeProxy(mode, four_nodes.state.node("n1").netns)
    proxy.sync([web(four_nodes, ["n2", "n3", "n4"])])
    proxy.sync([web(four_nodes, ["n4"])])
    assert hits(four_nodes, 20) == {"n4": 20}
    proxy.sync([web(four_nodes, [])])
    assert hits(four_nodes, 3) == {"URLError": 3}
