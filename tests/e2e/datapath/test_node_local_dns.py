"""Every datapath reaches the node-local DNS address (169.254.20.10): a pod's UDP and TCP
to it reach listeners in its node's netns, which see the pod's own address (the cache's
autopath needs it), and the replies come back from the address the pod asked (glibc
drops a UDP reply from any other). veth pods reach it through the node side; exclusive-ENI
pods have no link to their node, so their own tc program (eBPF) or their `veth1`
(kube-proxy) must take it there. ipvlan: in the VM's boot (vm_ipvlan_cases.py)."""

from __future__ import annotations

from typing import Any

import pytest

from podlab.datapath.nodelocal import NODE_LOCAL_DNS, node_local_address
from podlab.fakecloud.topology import default_topology
from podlab.lab.kube.manifests import LabApi, apply, load_documents
from podlab.lab.kube.manifests import running as all_running
from podlab.lab.pytest_plugin import LabFactory
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.e2e.datapath.world import (
    ask_tcp,
    ask_udp,
    assert_reaches_node_local,
    node_local_echo,
)
from tests.e2e.helpers import eventually

pytestmark = [pytest.mark.root, pytest.mark.kernel(*EBPF_NEEDS, "iptables", "nftables")]

CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: main, image: podlab/workload}]
"""


@pytest.mark.parametrize(("agent_settings", "service_proxy"), [
    ({"datapath": "veth"}, "ebpf"),
    ({"eni_mode": "exclusive", "min_pool_size": 0}, "ebpf"),
    ({"eni_mode": "exclusive", "min_pool_size": 0}, "iptables"),
], ids=["veth-ebpf", "exclusive-eni-ebpf", "exclusive-eni-iptables"])
def test_a_pod_reaches_the_node_local_address_in_its_node(
        lab_factory: LabFactory, agent_settings: dict[str, Any], service_proxy: str) -> None:
    lab = lab_factory(default_topology(nodes=1), agent_settings=agent_settings,
                      service_proxy=service_proxy, dns=False)
    api = LabApi(lab.state.kubeconfig)
    apply(api, load_documents(CLIENT, "client.yaml"), "client.yaml")
    eventually(lambda: all_running(api.pods(), ["client"]) or None, what="the client Running")
    client = lab.state.pod("default", "client")
    node = lab.state.node(client.node)
    node_local_address(node.netns, node.primary_ip)
    assert_reaches_node_local(client.netns, client.ip, node.netns)
    with node_local_echo(node.netns):  # the node's own sockets, under the socket LB too
        assert ask_udp(node.netns) == (b"udp?", NODE_LOCAL_DNS)
        assert ask_tcp(node.netns) == b"tcp?"
