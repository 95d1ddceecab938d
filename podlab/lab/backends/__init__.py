"""Node backends, registered by kind (containerlab's shape): `netns` now, `docker` later."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from podlab.lab.backends.base import NodeBackend
from podlab.lab.backends.netns import NetnsBackend
from podlab.lab.errors import LabError
from podlab.lab.state import LabState

BACKENDS: dict[str, Callable[[], NodeBackend]] = {"netns": NetnsBackend}


def backend(kind: str) -> NodeBackend:
    try:
        return BACKENDS[kind]()
    except KeyError:
        raise LabError(f"unknown node backend {kind!r}; have {sorted(BACKENDS)}") from None


def target_argv(state: LabState, target: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` on a node (`n1`) or in a pod (`ns/pod`) of a lab,
    through its backend: how `podlab exec`, `Lab.exec` and workloads enter either. A
    target the lab does not have is a KeyError naming it."""
    kind = backend(state.backend)
    if "/" in target:
        namespace, name = target.split("/", 1)
        return kind.pod_exec_argv(state.name, state.pod(namespace, name), argv)
    return kind.exec_argv(state.name, state.node(target).name, argv)


__all__ = ["BACKENDS", "NodeBackend", "backend", "target_argv"]
