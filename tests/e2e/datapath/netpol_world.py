"""Upstream's NetworkPolicy model (tests/netpol/) on ipvlan pods in the VM, for
vm_ipvlan_cases.py: the pods plumbed by the datapath directly and the eBPF programs on each
pod's eth0, with no agents and no control plane (the VM emulates its CPU). A check compiles
every node's state with the pods' real addresses and nodes, as its agent would, writes it to
that node's maps, and probes every pair of pods.

    n1 (ENI in vsw-a): x/a x/c y/b z/a z/c      n2 (ENI in vsw-b): x/b y/a y/c z/b
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass

from podlab.datapath import datapath
from podlab.datapath.bpf import PolicyMaps, Programs, bpffs
from podlab.datapath.bpf.policy_model import PolicyState
from podlab.lab import Lab
from podlab.lab.netpol_model import UPSTREAM
from podlab.lab.reach import PodTarget, probe_matrix
from podlab.lab.reachability import Matrix, differences
from podlab.lab.workload import Workload
from tests.e2e.datapath.world import PodSpec, World
from tests.netpol.cases import Expect
from tests.netpol.model import PolicyModel, assert_as_expected

NODES = (("n1", "vsw-a", "192.168.0", "eni-n1a"), ("n2", "vsw-b", "192.168.1", "eni-n2b"))
SPECS = tuple(
    PodSpec(pod.split("/")[1], node, vswitch, f"{subnet}.{110 + i}", eni,
            namespace=pod.split("/")[0])
    for i, pod in enumerate(UPSTREAM.all_pods())
    for node, vswitch, subnet, eni in [NODES[i % 2]])
PLACEMENT = {spec.key: (spec.node, spec.ip) for spec in SPECS}
# A denied probe costs its whole timeout, so each check probes every pair at once. TCP is
# answered by the kernel, but the emulated CPU is slow to run it; UDP waits for the
# workload's echo, a Python thread per datagram.
TIMEOUTS = {"tcp": 1.6, "udp": 3.0}
ROUNDS = 2  # probes of a check: again on a difference (a lost datagram, a reused UDP port)


@dataclass(frozen=True)
class NetpolPods:
    """The model's pods as probes see them, each node's address and policy maps."""

    targets: tuple[PodTarget, ...]
    hosts: dict[str, str]  # node -> its address (the node's traffic is always allowed)
    maps: dict[str, PolicyMaps]

    def write(self, states: dict[str, PolicyState]) -> None:
        for node, state in states.items():
            self.maps[node].sync(state)

    def probe(self, expect: Expect) -> Matrix:
        """Every pair on the expectation's port and protocol, again on a difference."""
        for _ in range(ROUNDS):
            observed = probe_matrix(self.targets, [expect.port], [expect.protocol],
                                    TIMEOUTS[expect.protocol])
            if not differences(expect.reachability, observed):
                break
        return observed


@contextmanager
def netpol_pods(lab: Lab) -> Iterator[NetpolPods]:
    """The model's pods in `lab` (two nodes, no agents), serving TCP and UDP on its ports,
    with the programs attached; afterwards the programs detached, the workloads stopped
    and every fd closed, whatever failed (the lab's teardown unmounts the pins)."""
    world = World(lab, datapath("ipvlan"))
    for spec in SPECS:
        world.add(spec)
    pins = bpffs.mount(lab.state.dir / "bpf")
    with ExitStack() as stack:
        maps = {}
        for node, *_ in NODES:
            programs = Programs.load(pins / node)
            stack.callback(programs.close)
            for spec in (s for s in SPECS if s.node == node):
                netns = world.pods[spec.key].netns
                workload = Workload(spec.key, netns=netns, http=UPSTREAM.ports,
                                    udp_echo=UPSTREAM.ports).start()
                stack.callback(workload.stop)
                stack.callback(programs.detach, netns, "eth0")
                programs.attach(netns, "eth0")
            maps[node] = stack.enter_context(closing(PolicyMaps(pins / node)))
        yield NetpolPods(
            tuple(PodTarget(s.key, s.ip, world.pods[s.key].netns) for s in SPECS),
            {node: str(lab.state.node(node).primary_ip) for node, *_ in NODES}, maps)


class IpvlanWorld(PolicyModel):
    """One case's world (tests/netpol/cases.World) over the shared pods: a fresh model,
    so every case starts with no policy and the model's labels; its first check rewrites
    the maps."""

    def __init__(self, pods: NetpolPods) -> None:
        super().__init__(PLACEMENT)
        self.netpol = pods

    def check(self, expect: Expect) -> None:
        self.netpol.write(self.states(self.netpol.hosts))
        assert_as_expected(expect, self.netpol.probe(expect))
