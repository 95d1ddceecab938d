"""The seam between the lab and whatever a node is (a netns today, a container later)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from podlab.lab.state import PodState


class NodeBackend(Protocol):
    """Makes nodes and their pods' sandboxes, and is the only way into either. The fabric
    plugs ENIs into the netns a backend names, so every backend hands back a named netns
    (a container's can be bound under /run/netns)."""

    kind: str

    def create_node(self, lab: str, node: str) -> str:
        """Create the node; return the name of its network namespace."""
        ...

    def delete_node(self, lab: str, node: str) -> None: ...

    def exec_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` on the node."""
        ...

    def create_pod(self, lab: str, pod: PodState, hostname: str) -> None:
        """The pod's sandbox: its netns (`pod.netns`) and its hostname's UTS namespace."""
        ...

    def delete_pod(self, lab: str, pod: PodState) -> None:
        """The sandbox and what it holds, processes included; idempotent."""
        ...

    def write_pod_files(self, lab: str, pod: PodState, files: Mapping[str, str]) -> None:
        """Files the pod's processes see in /etc (resolv.conf, hosts), not the node's."""
        ...

    def pod_exec_argv(self, lab: str, pod: PodState, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` in the pod: its netns, its UTS namespace and
        its /etc files."""
        ...
