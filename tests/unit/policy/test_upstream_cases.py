"""Every upstream NetworkPolicy case (tests/netpol/cases.py) through the compiler and the
datapath's lookup in Python: the first gate, a compiler error shows here in a second.

The model is upstream's on two nodes with fake addresses, so same-node and cross-node
pairs both occur; each node compiles its own state, as its agent would."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pytest

from podlab.cni.policy import compile_state
from podlab.lab.netpol_model import UPSTREAM
from podlab.lab.reachability import Matrix, Probe, comparison, differences
from tests.netpol.cases import CASES, NAME_LABEL, Case, Expect, Obj, PodIPs, run
from tests.unit.policy.emulate import allowed

NODES = {"n1": "192.168.0.1", "n2": "192.168.0.2"}


class SyntheticModel:
    """Upstream's model as the API would hold it, the pods alternating between two nodes
    with fake addresses, changed by a case's steps; a check compiles every node's state
    and evaluates all 81 pairs."""

    def __init__(self) -> None:
        docs = UPSTREAM.manifest()
        self.namespaces = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Namespace"}
        for name, ns in self.namespaces.items():  # as the API server labels a namespace
            ns["metadata"]["labels"][NAME_LABEL] = name
        self.pods: dict[str, Obj] = {}
        for i, pod in enumerate(d for d in docs if d["kind"] == "Pod"):
            pod["spec"]["nodeName"] = ("n1", "n2")[i % 2]
            pod["status"] = {"phase": "Running", "podIP": f"10.{i % 2 + 1}.0.{i + 10}"}
            self.pods[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = pod
        self.policies: dict[tuple[str, str], Obj] = {}

    def pod_ips(self) -> PodIPs:
        return {key: p["status"]["podIP"] for key, p in self.pods.items()}

    def apply(self, policy: Obj) -> None:
        meta = policy["metadata"]
        self.policies[meta["namespace"], meta["name"]] = copy.deepcopy(policy)

    def delete(self, namespace: str, name: str) -> None:
        del self.policies[namespace, name]

    def label_pod(self, pod: str, labels: Mapping[str, str]) -> None:
        self.pods[pod]["metadata"]["labels"].update(labels)

    def label_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        self.namespaces[namespace]["metadata"]["labels"].update(labels)

    def observe(self, port: int, protocol: str) -> Matrix:
        states = {node: compile_state(self.pods.values(), self.namespaces.values(),
                                      self.policies.values(), node=node, host_ips=[ip])
                  for node, ip in NODES.items()}
        ips = self.pod_ips()
        names = tuple(self.pods)
        return Matrix(names, (port,), (protocol,), {
            Probe(source, target, port, protocol):
                allowed(states, ips[source], ips[target], protocol, port)
            for source in names for target in names})

    def check(self, expect: Expect) -> None:
        observed = self.observe(expect.port, expect.protocol)
        assert not differences(expect.reachability, observed), \
            comparison(expect.reachability, observed)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_case(case: Case) -> None:
    run(case, SyntheticModel())
