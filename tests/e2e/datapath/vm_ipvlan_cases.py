"""The ipvlan datapath's end-to-end cases, run inside the VM by test_ipvlan_in_vm.py.

Not collected on the host (its name does not start with `test_`): this host's kernel has
no ipvlan, and strict mode would turn the skips into failures. The VM emulates its CPU,
so the steps of test_datapaths.py run on one lab rather than one lab each, and the
upstream NetworkPolicy cases share one lab of the model's nine pods (netpol_world.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from podlab.datapath import datapath, kernel_has_ipvlan, select_datapath
from podlab.datapath.bpf import Backend as LbBackend
from podlab.datapath.bpf import PolicyMaps, Programs, Service, ServiceMaps, bpffs
from podlab.datapath.bpf import ServicePort as LbServicePort
from podlab.datapath.bpf.policy_model import Endpoint, PolicyState, Rule
from podlab.datapath.kubeproxy import Backend, KubeProxy, ServicePort
from podlab.datapath.netlink import in_netns
from podlab.datapath.nodelocal import NODE_LOCAL_DNS, node_local_address, node_local_service
from podlab.fakecloud import default_topology
from podlab.lab import Lab
from podlab.lab.kube.probe import probe
from podlab.lab.netpol_model import UPSTREAM
from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import LabFactory, unique_lab_name
from podlab.lab.reach import probe_matrix
from podlab.lab.reachability import Reachability, differences
from podlab.lab.workload import Workload
from tests.e2e.datapath.netpol_world import TIMEOUTS, IpvlanWorld, NetpolPods, netpol_pods
from tests.e2e.datapath.world import (
    PODS,
    World,
    assert_check_reports_deleted_routes,
    assert_connectivity,
    assert_plumbed,
    assert_reaches_node_local,
    assert_result_matches_the_netns,
    assert_setup_is_idempotent,
    node_snapshot,
)
from tests.e2e.helpers import cni, ip_json, ping
from tests.netpol.cases import CASES, Case, run

pytestmark = [pytest.mark.root, pytest.mark.kernel("ipvlan")]
EBPF_VIP = "172.22.0.10"  # outside the lab's Service CIDR, which veth1 takes


def test_ipvlan_is_chosen_where_the_kernel_has_it() -> None:
    assert kernel_has_ipvlan()
    assert select_datapath().name == "ipvlan"
    assert select_datapath("veth").name == "veth"


def test_ipvlan_end_to_end(lab_factory: LabFactory) -> None:
    lab = lab_factory(default_topology(nodes=3), agents=False)
    world = World(lab, datapath("ipvlan"))
    for spec in PODS:
        world.plug(spec)
    pristine = {node: node_snapshot(lab, node) for node in ("n1", "n2")}
    for spec in PODS:
        world.add(spec)
    assert_plumbed(world)
    assert_connectivity(world)
    assert_result_matches_the_netns(world, "p1")
    assert_setup_is_idempotent(world, "p1")
    assert_check_reports_deleted_routes(world, "p1")

    for name in ("p1", "p2"):  # n1: teardown twice, the pods' netns still there
        world.datapath.teardown(world.node_netns("n1"), world.pods[name])
        world.datapath.teardown(world.node_netns("n1"), world.pods[name])
    for name in ("p3", "p4"):  # n2: the pods' netns already gone
        lab.delete_pod("default", name)
        world.datapath.teardown(world.node_netns("n2"), world.pods[name])
    assert {node: node_snapshot(lab, node) for node in pristine} == pristine


def test_ipvlan_through_the_agent_and_podlab_cni(lab_factory: LabFactory) -> None:
    """The whole path on ipvlan: node agents that chose ipvlan by probing the kernel, pods
    plumbed through podlab-cni, across nodes and from the node, a ClusterIP Service
    reached through the node's kube-proxy rules (veth1); DEL leaves the node clean.
    No control plane: the VM emulates its CPU, and kube-proxy is driven directly."""
    lab = lab_factory(default_topology(nodes=2), control_plane=False,
                      agent_settings={"service_cidr": "172.21.0.0/20"})
    assert {n.datapath for n in lab.state.nodes} == {"ipvlan"}
    lab.add_pod("default", "a", "n1")
    lab.add_pod("default", "b", "n2")
    (rc_a, a), (rc_b, b) = cni(lab, "ADD", "default/a", "n1"), cni(lab, "ADD", "default/b", "n2")
    assert (rc_a, rc_b) == (0, 0), (a, b)
    ip_a, ip_b = (r["ips"][0]["address"].split("/")[0] for r in (a, b))
    assert ip_json(lab, "default/a", "-d", "link", "show", "eth0")[0]["linkinfo"][
        "info_kind"] == "ipvlan"
    assert ping(lab, "default/a", ip_b, count=2)
    assert ping(lab, "n1", ip_a)
    web = Workload("b", netns=lab.state.pod("default", "b").netns, http=[8080]).start()
    try:
        KubeProxy("iptables", lab.state.node("n1").netns).sync([ServicePort(
            "default", "web", "http", "tcp", "172.21.0.10", 80, (Backend(ip_b, 8080),))])
        assert probe(lab.state.pod("default", "a").netns, "172.21.0.10", 80, "tcp") == (
            True, "connected", "b"), "an ipvlan pod reaches a ClusterIP through its node"
        n1 = lab.state.node("n1")
        node_local_address(n1.netns, n1.primary_ip)
        assert_reaches_node_local(lab.state.pod("default", "a").netns, ip_a, n1.netns)
        assert_ebpf_service(lab, ip_a, ip_b)
    finally:
        web.stop()
    assert cni(lab, "CHECK", "default/a", "n1")[0] == 0
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    routes = ip_json(lab, "n1", "-4", "route", "show", "table", "all")
    assert not [r for r in routes if r["dst"] == ip_a], "no route to the deleted pod is left"
    assert [link["ifname"] for link in ip_json(lab, "default/a", "link")] == ["lo"]


def assert_ebpf_policy(pins: Path, netns: str, ip_a: str, ip_b: str) -> None:
    """NetworkPolicy on the same eth0 (issue 14): the ipvlan pod's egress policy sees the
    Service's backend after translation, so allowing or not b's identity decides."""
    maps = PolicyMaps(pins)
    try:
        for peer, reached in ((257, True), (258, False)):
            maps.sync(PolicyState(pods={ip_a: 256, ip_b: 257}, endpoints={ip_a: Endpoint(
                ip_a, 256, egress=frozenset({Rule(peer, socket.IPPROTO_TCP, 8080)}))}))
            assert probe(netns, EBPF_VIP, 80, "tcp")[0] is reached, f"egress to {peer}"
        maps.sync(PolicyState())
    finally:
        maps.close()


def assert_ebpf_service(lab: Lab, ip_a: str, ip_b: str) -> None:
    """The eBPF Service programs on an ipvlan pod's own eth0 (issue 13): a VIP outside the
    Service CIDR, so that it leaves by eth0 and not by veth1, reaches the backend, which
    sees the pod's own IP. The programs are loaded from the host's build cache. Then the
    node-local DNS address without veth1's route: the programs take it to the node."""
    pins = bpffs.mount(lab.state.dir / "bpf") / "n1"
    programs = Programs.load(pins)
    netns = lab.state.pod("default", "a").netns
    n1 = lab.state.node("n1")
    try:
        programs.attach(netns, "eth0")
        ServiceMaps(pins).sync([Service(EBPF_VIP, (LbServicePort(80, "tcp", (
            LbBackend(ip_b, 8080),)),)), node_local_service(n1.primary_ip)])
        assert probe(netns, EBPF_VIP, 80, "tcp") == (True, "connected", "b")
        sock = in_netns(netns, lambda: socket.create_connection((EBPF_VIP, 80), timeout=5))
        with sock:
            sock.sendall(b"GET /clientip HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.decode().endswith(ip_a), "the backend sees the ipvlan pod's own IP"
        assert_ebpf_policy(pins, netns, ip_a, ip_b)
        lab.exec("default/a", ["ip", "route", "del", f"{NODE_LOCAL_DNS}/32"])
        assert_reaches_node_local(netns, ip_a, n1.netns)
    finally:
        programs.detach(netns, "eth0")
        programs.close()


@pytest.fixture(scope="module")
def netpol() -> Iterator[NetpolPods]:
    """Upstream's netpol model on ipvlan pods over two nodes, for every case; the lab
    torn down and leak-checked after the module."""
    with Lab(default_topology(nodes=2), unique_lab_name(), agents=False) as lab, \
            netpol_pods(lab) as pods:
        yield pods
    assert not leftovers(lab.name), f"lab {lab.name} left objects behind"


def test_the_netpol_model_is_fully_connected_without_policy(netpol: NetpolPods) -> None:
    observed = probe_matrix(netpol.targets, UPSTREAM.ports, UPSTREAM.protocols,
                            max(TIMEOUTS.values()))
    assert not differences(Reachability(True), observed), observed.render()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_netpol_case_on_ipvlan(netpol: NetpolPods, case: Case) -> None:
    """Issue 14's "the upstream netpol cases pass on every datapath", for ipvlan."""
    run(case, IpvlanWorld(netpol))
