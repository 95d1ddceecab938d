"""The default node backend: a node is a named network namespace, and so is a pod's
sandbox, with its UTS namespace and /etc files beside it (`podlab.lab.sandbox`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from podlab.lab import netns, sandbox
from podlab.lab.ownership import netns_name, remove_netns
from podlab.lab.state import PodState


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

    def create_pod(self, lab: str, pod: PodState, hostname: str) -> None:
        netns.create(pod.netns, lab)
        try:
            sandbox.create_uts(sandbox.uts_path(lab, pod.namespace, pod.name), hostname)
        except BaseException:
            self.delete_pod(lab, pod)
            raise

    def delete_pod(self, lab: str, pod: PodState) -> None:
        remove_netns(pod.netns)  # its processes first: they hold the UTS namespace too
        sandbox.remove_uts(sandbox.uts_path(lab, pod.namespace, pod.name))

    def write_pod_files(self, lab: str, pod: PodState, files: Mapping[str, str]) -> None:
        sandbox.write_etc(pod.netns, files)

    def pod_exec_argv(self, lab: str, pod: PodState, argv: Sequence[str]) -> list[str]:
        """`ip netns exec` for the netns and the /etc files it binds from /etc/netns (a
        setns alone would read the node's), then nsenter for the UTS namespace."""
        uts = sandbox.uts_path(lab, pod.namespace, pod.name)
        return ["ip", "netns", "exec", pod.netns, "nsenter", f"--uts={uts}", "--", *argv]
