"""Upstream's model as the API would hold it, changed by a case's steps, for worlds that
compile the policies themselves instead of running agents: the unit runner (compiler +
emulated lookup) and the VM's ipvlan runner (compiler + the real maps and programs).

A world is this bookkeeping plus `check`; `states` is what each node's agent would write.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from podlab.cni.policy import compile_state
from podlab.datapath.bpf.policy_model import PolicyState
from podlab.lab.netpol_model import UPSTREAM
from podlab.lab.reachability import Matrix, comparison, differences
from tests.netpol.cases import NAME_LABEL, Expect, Obj, PodIPs


class PolicyModel:
    """The model's namespaces and pods, each pod placed by `placement` ("ns/pod" -> (node,
    IP)) and Running, and the policies applied so far."""

    def __init__(self, placement: Mapping[str, tuple[str, str]]) -> None:
        docs = UPSTREAM.manifest()
        self.namespaces = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Namespace"}
        for name, ns in self.namespaces.items():  # as the API server labels a namespace
            ns["metadata"]["labels"][NAME_LABEL] = name
        self.pods: dict[str, Obj] = {}
        for pod in (d for d in docs if d["kind"] == "Pod"):
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            node, ip = placement[key]
            pod["spec"]["nodeName"] = node
            pod["status"] = {"phase": "Running", "podIP": ip}
            self.pods[key] = pod
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

    def states(self, host_ips: Mapping[str, str]) -> dict[str, PolicyState]:
        """Each node's state (node -> its address), compiled as its agent would."""
        return {node: compile_state(self.pods.values(), self.namespaces.values(),
                                    self.policies.values(), node=node, host_ips=[ip])
                for node, ip in host_ips.items()}


def assert_as_expected(expect: Expect, observed: Matrix) -> None:
    """Every observed pair as `expect` says, or the expected/observed/comparison tables."""
    assert not differences(expect.reachability, observed), \
        comparison(expect.reachability, observed)
