"""The world: topology, node backends, the VPC fabric, the lab life cycle, CLI, pytest plugin."""

import importlib
from typing import TYPE_CHECKING

from podlab.lab.constants import DEFAULT_LAB
from podlab.lab.errors import CommandError, LabError
from podlab.lab.state import LabState, NodeState, PodState

if TYPE_CHECKING:
    from podlab.fakecloud import Topology, TopologyError, default_topology, load_topology
    from podlab.lab.invariants import InvariantError, Violation, check, settled, violations
    from podlab.lab.lab import Lab

# Imported on first use (PEP 562): they load pyroute2 and the cloud SDK, a second that
# every CLI command paid before parsing its arguments when this package imported them.
_LAZY = {"Lab": "podlab.lab.lab", **dict.fromkeys(
    ["Topology", "TopologyError", "default_topology", "load_topology"], "podlab.fakecloud"),
    **dict.fromkeys(["InvariantError", "Violation", "check", "settled", "violations"],
                    "podlab.lab.invariants")}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_LAB",
    "CommandError",
    "InvariantError",
    "Lab",
    "LabError",
    "LabState",
    "NodeState",
    "PodState",
    "Topology",
    "TopologyError",
    "Violation",
    "check",
    "default_topology",
    "load_topology",
    "settled",
    "violations",
]
