"""The emulated Alibaba Cloud: ECS/VPC OpenAPI, instance metadata, and the world they serve."""

from podlab.fakecloud.exceptions import CloudError
from podlab.fakecloud.instance_types import INSTANCE_TYPES, InstanceType
from podlab.fakecloud.mock import mock
from podlab.fakecloud.models import Cloud, Eni, FabricHooks
from podlab.fakecloud.topology import (
    SECURITY_GROUP_ID,
    Node,
    Topology,
    TopologyError,
    VSwitch,
    default_topology,
    load_topology,
)
from podlab.fakecloud.wire import DEFAULT_CREDENTIALS, Endpoint

__all__ = [
    "DEFAULT_CREDENTIALS",
    "INSTANCE_TYPES",
    "SECURITY_GROUP_ID",
    "Cloud",
    "CloudError",
    "Endpoint",
    "Eni",
    "FabricHooks",
    "InstanceType",
    "Node",
    "Topology",
    "TopologyError",
    "VSwitch",
    "default_topology",
    "load_topology",
    "mock",
]
