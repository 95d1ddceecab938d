"""Every upstream NetworkPolicy case (tests/netpol/cases.py) through the compiler and the
datapath's lookup in Python: the first gate, a compiler error shows here in a second.

The model is upstream's on two nodes with fake addresses, so same-node and cross-node
pairs both occur; each node compiles its own state, as its agent would."""

from __future__ import annotations

import pytest

from podlab.lab.netpol_model import UPSTREAM
from podlab.lab.reachability import Matrix, Probe
from tests.netpol.cases import CASES, Case, Expect, run
from tests.netpol.model import PolicyModel, assert_as_expected
from tests.unit.policy.emulate import allowed

NODES = {"n1": "192.168.0.1", "n2": "192.168.0.2"}


class SyntheticModel(PolicyModel):
    """The pods alternating between two nodes with fake addresses; a check compiles every
    node's state and evaluates all 81 pairs."""

    def __init__(self) -> None:
        super().__init__({pod: (("n1", "n2")[i % 2], f"10.{i % 2 + 1}.0.{i + 10}")
                          for i, pod in enumerate(UPSTREAM.all_pods())})

    def observe(self, port: int, protocol: str) -> Matrix:
        states = self.states(NODES)
        ips = self.pod_ips()
        names = tuple(self.pods)
        return Matrix(names, (port,), (protocol,), {
            Probe(source, target, port, protocol):
                allowed(states, ips[source], ips[target], protocol, port)
            for source in names for target in names})

    def check(self, expect: Expect) -> None:
        assert_as_expected(expect, self.observe(expect.port, expect.protocol))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_case(case: Case) -> None:
    run(case, SyntheticModel())
