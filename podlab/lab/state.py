"""A lab's state on disk (<run dir>/<lab>/state.json), so separate CLI calls share one lab."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from podlab.lab.process import ProcessRef


def run_dir() -> Path:
    """Root of all labs' state; PODLAB_RUN_DIR moves it (tests of the CLI use that)."""
    return Path(os.environ.get("PODLAB_RUN_DIR", "/run/podlab"))


_SAVING = threading.Lock()


@dataclass
class NodeState:
    name: str
    instance_id: str
    instance_type: str
    zone: str
    vswitch: str
    primary_ip: str
    mac: str
    netns: str
    gateway: str
    agent_socket: str = ""
    cni_conf_dir: str = ""
    cni_bin_dir: str = ""
    cni_network: str = ""
    datapath: str = ""
    service_proxy: str = ""  # ebpf, iptables or nftables (kube-proxy's); "": no Services
    # the agent as the lab's restarts see it (see podlab.lab.agents)
    agent_state: str = ""  # Running, CrashLoopBackOff (waiting to restart) or Stopped
    agent_restarts: int = 0  # restarts after crashes, as a DaemonSet pod's restartCount
    agent_last_exit: int | None = None  # Popen's code: -9 for SIGKILL
    agent_last_exit_at: str = ""  # ISO 8601, UTC


@dataclass
class PodState:
    namespace: str
    name: str
    node: str
    netns: str
    ip: str = ""  # set once the CNI gave the pod its address
    uid: str = ""  # the API's pod, saved with `ip`: whose sandbox a resumed lab adopts
    # the sandbox as the node runtime sees it (see podlab.lab.kube.node_runtime)
    health: str = ""  # Running, or AddressLost until the runtime recreates the sandbox
    sandbox_restarts: int = 0  # sandboxes recreated for this pod
    last_problem: str = ""  # why the last one was recreated


@dataclass
class MgmtState:
    """The management link: host side in the root netns, fabric side in the VPC router."""

    host_if: str
    host_ip: str
    fabric_ip: str
    prefixlen: int


@dataclass
class LabState:
    name: str
    owner: ProcessRef
    owner_kind: str  # "supervisor" (podlab up) or "process" (a test, a script)
    backend: str
    topology: dict[str, Any]
    status: str = "starting"
    fabric_netns: str = ""
    mgmt: MgmtState | None = None
    cloud_endpoint: str = ""  # the OpenAPI endpoint as nodes reach it, inside the VPC
    cloud_endpoint_host: str = ""  # the same endpoint from the host, over the mgmt link
    cloud_admin: str = ""  # the cloud's admin endpoints, on the host's loopback only
    kube_api: str = ""  # the Kubernetes API on the host's loopback
    kubeconfig: str = ""
    nodes: list[NodeState] = field(default_factory=list)
    pods: list[PodState] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return run_dir() / self.name

    @property
    def cloud_admin_token_file(self) -> Path:
        return self.dir / "cloud-admin-token"

    @property
    def cloud_db(self) -> Path:
        """The cloud model's file, from which a resumed lab's cloud continues."""
        return self.dir / "cloud.db"

    def save(self) -> None:
        """Atomic for readers; serialised, as node runtimes and agent restarts save from
        their own threads."""
        with _SAVING:
            tmp = self.dir / "state.json.tmp"
            tmp.write_text(json.dumps(asdict(self), indent=2))
            tmp.replace(self.dir / "state.json")

    def node(self, name: str) -> NodeState:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"lab {self.name!r} has no node {name!r}")

    def pod(self, namespace: str, name: str) -> PodState:
        for p in self.pods:
            if (p.namespace, p.name) == (namespace, name):
                return p
        raise KeyError(f"lab {self.name!r} has no pod {namespace}/{name}")

    def target_netns(self, target: str) -> str:
        """The netns of a node (`n1`) or a pod (`namespace/name`)."""
        if "/" in target:
            namespace, name = target.split("/", 1)
            return self.pod(namespace, name).netns
        return self.node(target).netns

    def summary(self) -> dict[str, Any]:
        """What `podlab status --json` prints; later fields are added, never renamed."""
        return {
            "name": self.name,
            "status": self.status,
            "backend": self.backend,
            "owner_pid": self.owner.pid,
            "fabric_netns": self.fabric_netns,
            "mgmt": asdict(self.mgmt) if self.mgmt else None,
            "cloud_endpoint": self.cloud_endpoint,
            "cloud_endpoint_host": self.cloud_endpoint_host,
            "cloud_admin": self.cloud_admin,
            "kube_api": self.kube_api,
            "kubeconfig": self.kubeconfig,
            "nodes": [asdict(n) for n in self.nodes],
            "pods": [asdict(p) for p in self.pods],
        }

    @classmethod
    def load(cls, name: str) -> LabState:
        data = json.loads((run_dir() / name / "state.json").read_text())
        data["owner"] = ProcessRef(**data["owner"])
        data["mgmt"] = MgmtState(**data["mgmt"]) if data.get("mgmt") else None
        data["nodes"] = [NodeState(**n) for n in data["nodes"]]
        data["pods"] = [PodState(**p) for p in data["pods"]]
        return cls(**data)

    @classmethod
    def all(cls) -> list[LabState]:
        """Every lab with a readable state file, live or not."""
        states = []
        root = run_dir()
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / "state.json").is_file():
                    try:
                        states.append(cls.load(d.name))
                    except (OSError, ValueError, KeyError, TypeError):
                        continue
        return states
