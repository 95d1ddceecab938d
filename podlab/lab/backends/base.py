"""The seam between the lab and whatever a node is (a netns today, a container later)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class NodeBackend(Protocol):
    """Makes nodes. The fabric plugs ENIs into the netns a backend names, so every backend
    hands back a named netns (a container's can be bound under /run/netns)."""

    kind: str

    def create_node(self, lab: str, node: str) -> str:
        """Create the node; return the name of its network namespace."""
        ...

    def delete_node(self, lab: str, node: str) -> None: ...

    def exec_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` on the node."""
        ...
