"""The lab's control plane: one API store served twice — on loopback for the host (kubectl,
the Python client, `podlab apply`) and inside the VPC at 100.100.80.1:6443 for the node
agents — and the controllers that make the store's wishes real. Everything runs in the
lab's process; controllers see changes through the store's in-process subscription.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from podlab.cni import protocol
from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from podlab.lab import netns
from podlab.lab.cloud import CLOUD_ENDPOINT_IP
from podlab.lab.kube.controller import Controller
from podlab.lab.kube.deployments import DeploymentController
from podlab.lab.kube.endpoints import EndpointsController
from podlab.lab.kube.node_runtime import NodeRuntime
from podlab.lab.kube.scheduler import Scheduler
from podlab.lab.kube.service_proxy import ServiceProxy
from podlab.lab.kube.statefulsets import StatefulSetController
from podlab.lab.lab import KUBE_API_PORT, SERVICE_CIDR

if TYPE_CHECKING:
    from podlab.lab.lab import Lab



class ControlPlane:
    def __init__(self, lab: Lab, proxy_mode: str = "iptables") -> None:
        self.lab = lab
        self.store = Store(service_cidr=SERVICE_CIDR)
        self.proxy_mode = proxy_mode
        self.servers: list[KubeApiServer] = []
        self.controllers: list[Controller] = []
        self.runtimes: dict[str, NodeRuntime] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.lab.state.dir / "kubeconfig"

    def start(self) -> ControlPlane:
        host = KubeApiServer(self.store, "127.0.0.1", 0).start()
        self.servers = [host, KubeApiServer(self.store, sock=netns.listen(
            self.lab.state.fabric_netns, CLOUD_ENDPOINT_IP, KUBE_API_PORT)).start()]
        write_kubeconfig(self.kubeconfig, host.url, name=self.lab.name)
        for node in self.lab.state.nodes:
            # Pods the node's ENIs can hold, as its agent reports: the scheduler reads it
            # from the Node, as kube-scheduler reads allocatable pods.
            capacity = int(protocol.call(node.agent_socket, "info")["capacity"])
            self.store.create("nodes", node_object(node.name, node.primary_ip, node.zone,
                                                   node.instance_type, capacity))
        self.runtimes = {n.name: NodeRuntime(self.lab, self.store, n.name).start()
                         for n in self.lab.state.nodes}
        self.controllers = [
            Scheduler(self.store).start(),
            EndpointsController(self.store).start(),
            StatefulSetController(self.store).start(),
            DeploymentController(self.store).start(),
            ServiceProxy(self.store, self.proxy_mode,
                         [n.netns for n in self.lab.state.nodes]).start(),
            *self.runtimes.values()]
        self.store.subscribe(self._fan_out)
        self.lab.state.kubeconfig = str(self.kubeconfig)
        self.lab.state.kube_api = host.url
        self.lab.state.save()
        return self

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()
        for server in self.servers:
            server.stop()

    def _fan_out(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        for controller in self.controllers:
            controller.on_event(kind, resource, obj)


def node_object(name: str, ip: str, zone: str, instance_type: str, pods: int
                ) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": zone,
            "node.kubernetes.io/instance-type": instance_type}},
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "capacity": {"pods": str(pods)}, "allocatable": {"pods": str(pods)},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-podlab", "containerRuntimeVersion":
                         "podlab://1", "osImage": "podlab netns", "architecture": "amd64",
                         "operatingSystem": "linux"}},
    }
