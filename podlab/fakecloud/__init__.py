"""The emulated Alibaba Cloud: ECS/VPC OpenAPI, instance metadata, and the world they serve."""

from podlab.fakecloud.instance_types import INSTANCE_TYPES, InstanceType
from podlab.fakecloud.topology import (
    Node,
    Topology,
    TopologyError,
    VSwitch,
    default_topology,
    load_topology,
)

__all__ = [
    "INSTANCE_TYPES",
    "InstanceType",
    "Node",
    "Topology",
    "TopologyError",
    "VSwitch",
    "default_topology",
    "load_topology",
]
