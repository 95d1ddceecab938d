"""The lab's control plane: one API store served twice — on loopback for the host (kubectl,
the Python client, `podlab apply`) and inside the VPC at 100.100.80.1:6443 for the node
agents — and the controllers that make the store's wishes real. Everything runs in the
lab's process; controllers see changes through the store's in-process subscription. With
DNS it installs the cluster DNS as kubeadm does (kube-system/coredns behind kube-dns),
whose pods the node runtimes serve with podlab's DNS server (`podlab.lab.dns`).

The store is the file `<run dir>/kube.db`: a control plane started where one exists (a lab
resumed after its owner died) serves what it holds, and `restart_api()` restarts the API
servers on it as a kube-apiserver restart would, losing nothing.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from podlab.cni import protocol
from podlab.controllers import (
    Controller,
    DeploymentController,
    EndpointsController,
    Scheduler,
    ServiceProxy,
    StatefulSetController,
)
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from podlab.lab import netns
from podlab.lab.constants import CLOUD_ENDPOINT_IP, KUBE_API_PORT, KUBE_DNS_IP, SERVICE_CIDR
from podlab.lab.dns import CLUSTER_DNS_IMAGE, ClusterDns, cluster_dns_objects
from podlab.lab.kube.access import ApiAccess
from podlab.lab.kube.host import SandboxHost
from podlab.lab.kube.node_runtime import NodeRuntime
from podlab.lab.pipeline import Step, Undo, unwound_on_failure


class ControlPlane:
    """Started as named `steps`; a failure at any of them stops what the earlier ones
    started, so a control plane is either fully up or not there at all."""

    def __init__(self, lab: SandboxHost, service_proxy: str = "iptables",
                 access: ApiAccess | None = None, dns: ClusterDns | None = None) -> None:
        """`service_proxy`: iptables or nftables runs kube-proxy in every node; ebpf runs
        none, since the node agents serve Services. `access`: the API's users and
        certificate (the lab's, made before its agents start); the kubeconfig carries the
        lab user's token and the CA. `dns`: the cluster DNS, run by the node runtimes for
        the `coredns` pods the control plane creates. The store is opened by the first
        step."""
        self.lab = lab
        self.store_path = lab.state.dir / "kube.db"
        self.store: Store
        self.access = access or ApiAccess()
        self._tls = self.access.cert.server_context()
        self.service_proxy = service_proxy
        self.dns = dns
        self.servers: list[KubeApiServer] = []
        self.controllers: list[Controller] = []
        self.runtimes: dict[str, NodeRuntime] = {}
        self._undo = Undo()

    @property
    def kubeconfig(self) -> Path:
        return self.lab.state.dir / "kubeconfig"

    def steps(self) -> list[Step]:
        return [
            Step("store", f"opened the API's store {self.store_path}", self._open_store),
            Step("api-host", "served the API on loopback", self._serve_host),
            Step("api-vpc", f"served the API at {CLOUD_ENDPOINT_IP}:{KUBE_API_PORT}",
                 self._serve_vpc),
            Step("kubeconfig", "wrote the kubeconfig", self._write_kubeconfig),
            Step("nodes", "registered the nodes", self._register_nodes),
            Step("runtimes", "started the node runtimes", self._start_runtimes),
            Step("controllers", "started the controllers", self._start_controllers),
            Step("watch", "fed the store's objects and changes to the controllers",
                 self._feed),
            *([Step("dns", "created the cluster DNS (Deployment kube-system/coredns, "
                    f"Service kube-dns at {KUBE_DNS_IP})", self._create_dns)]
              if self.dns else []),
            Step("state", "recorded the API in the lab's state", self._record),
        ]

    def start(self) -> ControlPlane:
        with unwound_on_failure(self.stop):
            for step in self.steps():
                step.run()
        return self

    def stop(self) -> None:
        """Stop everything `start` started, every part even when another fails."""
        self._undo.close()

    def restart_api(self) -> None:
        """Restart the API servers as a kube-apiserver restart does (a fault for tests and
        scenarios): every connection and watch ends, the store is read back from its file
        (nothing in memory survives), and the API is served again at the same addresses.
        Clients resume their watches from their last resourceVersion, or get 410 Gone and
        relist; the in-process controllers stay subscribed and miss nothing."""
        for server in self.servers:
            server.stop()
        self.store.reopen()
        self.servers = [self._host_server(self.servers[0].port), self._vpc_server()]
        for server in self.servers:
            server.start()

    def _open_store(self) -> None:
        self.store = Store(self.store_path, service_cidr=SERVICE_CIDR)
        self._undo.push(f"close the API's store {self.store_path}", self.store.close)

    def _serve(self, server: KubeApiServer) -> None:
        self.servers.append(server.start())
        self._undo.push(f"stop the API server at {server.url}",
                        partial(self._stop_server, len(self.servers) - 1))

    def _stop_server(self, index: int) -> None:
        """Stop the server at `index` now, which restart_api may have replaced."""
        self.servers[index].stop()

    def _host_server(self, port: int = 0) -> KubeApiServer:
        return KubeApiServer(self.store, "127.0.0.1", port, tokens=self.access.tokens,
                             tls=self._tls)

    def _vpc_server(self) -> KubeApiServer:
        sock = netns.listen(self.lab.state.fabric_netns, CLOUD_ENDPOINT_IP, KUBE_API_PORT)
        return KubeApiServer(self.store, sock=sock, tokens=self.access.tokens, tls=self._tls)

    def _serve_host(self) -> None:
        self._serve(self._host_server())

    def _serve_vpc(self) -> None:
        self._serve(self._vpc_server())

    def _write_kubeconfig(self) -> None:
        write_kubeconfig(self.kubeconfig, self.servers[0].url, name=self.lab.state.name,
                         token=self.access.user_token, ca=self.access.cert.ca_pem)
        self._undo.push("remove the kubeconfig", lambda: self.kubeconfig.unlink(missing_ok=True))

    def _register_nodes(self) -> None:
        for node in self.lab.state.nodes:
            # Pods the node's ENIs can hold, as its agent reports: the scheduler reads it
            # from the Node, as kube-scheduler reads allocatable pods.
            capacity = int(protocol.call(node.agent_socket, "info")["capacity"])
            fresh = node_object(node.name, node.primary_ip, node.zone, node.instance_type,
                                capacity)
            try:
                self.store.create("nodes", fresh)
            except ApiError as e:
                if e.code != 409:
                    raise
                # in a store read back from its file: as a kubelet re-registers, its status
                # is the node's now (the node runtime sets Ready from here)
                known = self.store.get("nodes", None, node.name)
                self.store.update_status("nodes", {**known, "status": fresh["status"]})

    def _run(self, controller: Controller) -> None:
        self.controllers.append(controller.start())
        self._undo.push(f"stop {controller.name}", controller.stop)

    def _start_runtimes(self) -> None:
        images = {}
        if self.dns:  # before a runtime adopts a coredns pod (a resumed lab's)
            self.dns.prepare()
            images[CLUSTER_DNS_IMAGE] = self.dns.serve
        for node in self.lab.state.nodes:
            self.runtimes[node.name] = NodeRuntime(self.lab, self.store, node.name, images)
            self._run(self.runtimes[node.name])

    def _start_controllers(self) -> None:
        controllers: list[Controller] = [
            Scheduler(self.store), EndpointsController(self.store),
            StatefulSetController(self.store), DeploymentController(self.store)]
        if self.service_proxy != "ebpf":
            controllers.append(ServiceProxy(self.store, self.service_proxy,
                                            [n.netns for n in self.lab.state.nodes]))
        for controller in controllers:
            self._run(controller)

    def _feed(self) -> None:
        """Subscribe the controllers, then hand them every stored object, as informers
        list before they watch: a store read back from its file holds work no change
        will announce (a Deployment short of pods, a Service without endpoints)."""
        self.store.subscribe(self._fan_out)
        for s in self.store.kinds:
            for obj in self.store.list(s.resource.name)[0]:
                self._fan_out("ADDED", s.resource.name, obj)

    def _create_dns(self) -> None:
        """The cluster DNS as kubeadm installs it; a store read back keeps its own."""
        for resource, obj in cluster_dns_objects():
            try:
                self.store.create(resource, obj)
            except ApiError as e:
                if e.code != 409:
                    raise

    def _record(self) -> None:
        self.lab.state.kubeconfig = str(self.kubeconfig)
        self.lab.state.kube_api = self.servers[0].url
        self.lab.state.save()

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
