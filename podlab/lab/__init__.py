"""The world: topology, node backends, the VPC fabric, the lab life cycle, CLI, pytest plugin."""

from podlab.fakecloud import Topology, TopologyError, default_topology, load_topology
from podlab.lab.errors import CommandError, LabError
from podlab.lab.lab import DEFAULT_LAB, Lab
from podlab.lab.state import LabState, NodeState, PodState

__all__ = [
    "DEFAULT_LAB",
    "CommandError",
    "Lab",
    "LabError",
    "LabState",
    "NodeState",
    "PodState",
    "Topology",
    "TopologyError",
    "default_topology",
    "load_topology",
]
