"""What the control plane needs of a lab, as a Protocol, so that the lab's wiring does not
import the lab (which imports it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from podlab.lab.state import LabState, PodState


class SandboxHost(Protocol):
    """A lab as its control plane sees it: its state, and pod sandboxes on its nodes."""

    state: LabState
    cluster_dns: str  # the nameserver of ClusterFirst pods (kubelet's --cluster-dns), or ""

    def add_pod(self, namespace: str, name: str, node: str, hostname: str = "") -> PodState: ...

    def delete_pod(self, namespace: str, name: str) -> None: ...

    def set_pod_ip(self, namespace: str, name: str, ip: str) -> None: ...

    def write_pod_files(self, namespace: str, name: str, files: Mapping[str, str]) -> None:
        """Files the pod's processes see in /etc (resolv.conf, hosts)."""
        ...
