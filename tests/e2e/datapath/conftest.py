"""The datapaths this host's kernel runs; ipvlan runs in the VM (test_ipvlan_in_vm.py)."""

import pytest

from podlab.datapath import Datapath, datapath

# The shared steps assert in world.py; rewrite it so a failing step shows its values.
pytest.register_assert_rewrite("tests.e2e.datapath.world")


@pytest.fixture(params=["veth", "exclusive-eni"])
def dp(request: pytest.FixtureRequest) -> Datapath:
    return datapath(request.param)
