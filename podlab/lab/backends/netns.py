"""The default node backend: a node is a named network namespace."""

from __future__ import annotations

from collections.abc import Sequence

from podlab.lab import netns
from podlab.lab.ownership import netns_name, remove_netns


class NetnsBackend:
    kind = "netns"

    def create_node(self, lab: str, node: str) -> str:
        name = netns_name(lab, "node", node)
        netns.create(name, lab)
        return name

    def delete_node(self, lab: str, node: str) -> None:
        remove_netns(netns_name(lab, "node", node))

    def exec_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", netns_name(lab, "node", node), *argv]
