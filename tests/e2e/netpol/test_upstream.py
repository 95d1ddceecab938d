"""The upstream NetworkPolicy cases (tests/netpol/cases.py) in a real lab, on the veth and
exclusive-ENI datapaths this host's kernel runs (ipvlan needs the VM's kernel: the same
cases run there, in tests/e2e/datapath/netpol_world.py). One lab per datapath holds upstream's
model for every case; after each case its policies are deleted and its label changes
undone, and the model must be fully connected again before the next one starts. Each
expectation waits for every node's agent to enforce the case's last API change (its
resourceVersion, from `info`), so that an expectation equal to the state before a step
cannot pass early; then it is probed until the whole matrix matches it or the deadline
passes (a UDP probe may meet a stale conntrack entry of its tuple), and then the expected,
observed and comparison tables are printed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

import pytest
from kubernetes.client.exceptions import ApiException

from podlab.cni import protocol
from podlab.fakecloud import Topology
from podlab.fakecloud.topology import default_topology
from podlab.kubeapi.kinds import BUILTIN
from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi
from podlab.lab.netpol_model import UPSTREAM, apply_model
from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import unique_lab_name
from podlab.lab.reach import lab_pods, probe_matrix
from podlab.lab.reachability import Reachability, comparison, differences
from podlab.lab.service_proxy import EBPF_NEEDS
from tests.netpol.cases import CASES, Case, Expect, Obj, PodIPs, run

pytestmark = [pytest.mark.root, pytest.mark.kernel("netns", "veth", *EBPF_NEEDS)]

DATAPATHS: Mapping[str, dict[str, object]] = {
    "veth": {},
    "exclusive-eni": {"eni_mode": "exclusive", "min_pool_size": 0},
}
# Eight ENIs a node: seven pods each own one, so the nine fit on two nodes.
INSTANCE_TYPE = "ecs.g7.3xlarge"
CONVERGE = 10.0  # seconds for a change to be enforced everywhere (the goal is 1 s)
MERGE_PATCH = "application/merge-patch+json"
POLICIES = BUILTIN.resources["networkpolicies"]
PODS = BUILTIN.resources["pods"]
NAMESPACES = BUILTIN.resources["namespaces"]


def topology() -> Topology:
    data = default_topology().to_dict()
    for node in data["nodes"]:
        node["instance_type"] = INSTANCE_TYPE
    return Topology.from_dict(data)


class LabWorld:
    """A case's steps through the lab's API, as kubectl would make them; its checks probe
    every pair of the model's pods."""

    def __init__(self, lab: Lab, api: LabApi) -> None:
        self.lab, self.api = lab, api
        self.pods = lab_pods(lab.state, api, UPSTREAM.namespaces)
        self.undo: dict[str, dict[str, str | None]] = {}  # API path -> labels to patch back
        self.version = 0  # the resourceVersion of the last change made

    def call(self, method: str, path: str, body: Obj | None,
             content_type: str = "application/json") -> Obj:
        """One write; its resourceVersion is what the agents must enforce next."""
        answer = self.api.call(method, path, body, content_type)
        self.version = max(self.version, int(answer["metadata"]["resourceVersion"]))
        return answer

    def enforced(self) -> None:
        """Wait until every node's agent has written maps that include the last change."""
        deadline = time.monotonic() + CONVERGE
        behind = self.lab.state.nodes
        while behind := [n for n in behind if protocol.call(n.agent_socket, "info")[
                "policy_version"] < self.version]:
            if time.monotonic() > deadline:
                pytest.fail(f"{[n.name for n in behind]} did not enforce resourceVersion "
                            f"{self.version} within {CONVERGE:.0f}s", pytrace=False)
            time.sleep(0.02)  # polling the agents' info, with a deadline

    def pod_ips(self) -> PodIPs:
        return {p.name: p.ip for p in self.pods}

    def apply(self, policy: Obj) -> None:
        """Create it, or replace the policy of that name (upstream's UpdatePolicy)."""
        meta = policy["metadata"]
        try:
            self.call("POST", self.api.path(POLICIES, meta["namespace"]), policy)
        except ApiException as e:
            if e.status != 409:
                raise
            path = self.api.path(POLICIES, meta["namespace"], meta["name"])
            version = self.api.call("GET", path)["metadata"]["resourceVersion"]
            self.call("PUT", path, {**policy, "metadata": {**meta,
                                                                "resourceVersion": version}})

    def delete(self, namespace: str, name: str) -> None:
        self.call("DELETE", self.api.path(POLICIES, namespace, name), None)

    def label_pod(self, pod: str, labels: Mapping[str, str]) -> None:
        namespace, name = pod.split("/")
        self._label(self.api.path(PODS, namespace, name), labels)

    def label_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        self._label(self.api.path(NAMESPACES, None, namespace), labels)

    def _label(self, path: str, labels: Mapping[str, str]) -> None:
        before = self.api.call("GET", path)["metadata"].get("labels") or {}
        undo = self.undo.setdefault(path, {})
        for key in labels:
            undo.setdefault(key, before.get(key))  # None: a merge patch removes the key
        self.call("PATCH", path, {"metadata": {"labels": dict(labels)}}, MERGE_PATCH)

    def check(self, expect: Expect) -> None:
        self.converge(expect.reachability, [expect.port], [expect.protocol])

    def converge(self, expected: Reachability, ports: Iterable[int],
                 protocols: Iterable[str]) -> None:
        """Probe until every pair is as `expected`, or fail with the tables."""
        ports, protocols = list(ports), list(protocols)
        self.enforced()
        deadline = time.monotonic() + CONVERGE
        while differences(expected, observed := probe_matrix(self.pods, ports, protocols)):
            if time.monotonic() > deadline:
                pytest.fail(f"not as expected within {CONVERGE:.0f}s:\n"
                            f"{comparison(expected, observed)}", pytrace=False)
            time.sleep(0.1)  # between rounds of probes, polling for the agents' update

    def reset(self) -> None:
        """Every policy of the model's namespaces deleted, every label changed put back;
        then the model is as it started: all connected."""
        for namespace in UPSTREAM.namespaces:
            for policy in self.api.list(POLICIES, namespace):
                self.delete(namespace, policy["metadata"]["name"])
        for path, labels in self.undo.items():
            self.call("PATCH", path, {"metadata": {"labels": labels}}, MERGE_PATCH)
        self.undo.clear()
        self.converge(Reachability(True), UPSTREAM.ports, UPSTREAM.protocols)


@pytest.fixture(scope="module", params=list(DATAPATHS))
def world(request: pytest.FixtureRequest) -> Iterator[LabWorld]:
    """A lab of the datapath with upstream's model running; torn down and leak-checked
    after the module."""
    with Lab(topology(), unique_lab_name(), agent_settings=DATAPATHS[request.param]) as lab:
        assert {n.datapath for n in lab.state.nodes} == {request.param}
        api = LabApi(lab.state.kubeconfig)
        apply_model(api)
        yield LabWorld(lab, api)
    assert not leftovers(lab.name), f"lab {lab.name} left objects behind"


@pytest.fixture
def clean(world: LabWorld) -> Iterator[LabWorld]:
    """The world, reset after the case (a failed reset is the teardown's error, apart from
    the case's own)."""
    yield world
    world.reset()


def test_the_model_is_fully_connected_without_policy(world: LabWorld) -> None:
    assert [p.name for p in world.pods] == UPSTREAM.all_pods()
    world.converge(Reachability(True), UPSTREAM.ports, UPSTREAM.protocols)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_case(clean: LabWorld, case: Case) -> None:
    run(case, clean)
