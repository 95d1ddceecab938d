"""A lab's cost per node: seconds to bring it up and MiB of memory (PSS, so pages that
processes share are counted once) of the owner plus every process the lab started, for
1, 8 and 32 nodes (PODLAB_BENCH_FULL=1 adds 50). Each lab is a full one: agents and the
control plane, as `podlab up` makes. Prints figures; asserts no time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from podlab.fakecloud import default_topology
from podlab.lab import Lab
from podlab.lab.ownership import owned_processes
from podlab.lab.pytest_plugin import unique_lab_name

pytestmark = pytest.mark.root
SIZES = [1, 8, 32] + ([50] if os.environ.get("PODLAB_BENCH_FULL") == "1" else [])


def pss_mib(pid: int) -> float:
    """The process's proportional share of the memory it maps (0 if it is gone)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kib = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return kib / 1024


@pytest.mark.parametrize("nodes", SIZES)
def test_lab_cost_per_node(nodes: int) -> None:
    started = time.monotonic()
    with Lab(default_topology(nodes), unique_lab_name()) as lab:
        seconds = time.monotonic() - started
        procs = owned_processes(lab.name)
        owner, others = pss_mib(os.getpid()), sum(pss_mib(pid) for pid in procs)
        assert lab.agents is not None
        assert len(lab.agents.procs) == nodes
    total = owner + others
    print(f"\n{nodes} nodes: up in {seconds:.1f} s ({seconds / nodes:.2f} s a node); "
          f"PSS {total:.0f} MiB = owner {owner:.0f} + {len(procs)} processes {others:.0f} "
          f"({total / nodes:.1f} MiB a node)")
