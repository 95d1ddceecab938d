"""The kinds the lab's API serves, one module each (its `Strategy`), and the registry
that lists them. Adding a kind: a module here, and its `STRATEGY` in `BUILTIN`."""

from __future__ import annotations

from podlab.kubeapi.kinds import (
    deployments,
    endpoints,
    endpointslices,
    namespaces,
    networkpolicies,
    nodes,
    pods,
    services,
    statefulsets,
)
from podlab.kubeapi.registry import Registry

BUILTIN = Registry((
    namespaces.STRATEGY, nodes.STRATEGY, pods.STRATEGY, services.STRATEGY,
    endpoints.STRATEGY, endpointslices.STRATEGY, statefulsets.STRATEGY,
    deployments.STRATEGY, networkpolicies.STRATEGY,
))
