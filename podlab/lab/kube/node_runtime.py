"""The lab's kubelet stand-in, one per node: it runs the pods bound to its node.

For a pod it creates the pod's netns, calls the CNI exactly as a container runtime does
(the conflist from the node's conf dir, plugins from its bin dir, run inside the node,
`CNI_ARGS` with `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;
K8S_POD_INFRA_CONTAINER_ID=…`), serves the pod's container ports from the netns (the
agnhost-like `Workload`), and reports podIP, hostIP and phase Running. A pod that is gone
(or replaced by a pod of the same name) gets CNI DEL and loses its netns.

Container ports: TCP ports serve HTTP (`/hostname`, `/clientip`), TCP ports whose name
starts with `echo` serve TCP echo, UDP ports serve UDP echo.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from podlab.cni.protocol import CONF_FILE
from podlab.kubeapi.store import Store, now
from podlab.lab.cni_runtime import Attachment, CniError, CniRuntime, NetworkList, PluginExec
from podlab.lab.kube.controller import Controller
from podlab.lab.workload import Workload

if TYPE_CHECKING:
    from podlab.lab.lab import Lab

REFERENCE_PLUGINS = "/usr/lib/cni"  # portmap, bandwidth, tuning for chained conflists


@dataclass
class RunningPod:
    uid: str
    network: NetworkList
    attachment: Attachment
    workload: Workload


def container_ports(pod: dict[str, Any]) -> dict[str, list[int]]:
    """The pod's ports by what serves them (see the module docstring)."""
    served: dict[str, list[int]] = {"http": [], "tcp_echo": [], "udp_echo": []}
    for container in pod["spec"].get("containers", []):
        for port in container.get("ports", []):
            proto = str(port.get("protocol", "TCP")).upper()
            kind = ("udp_echo" if proto == "UDP" else
                    "tcp_echo" if str(port.get("name", "")).startswith("echo") else "http")
            served[kind].append(int(port["containerPort"]))
    return served


class NodeRuntime(Controller):
    def __init__(self, lab: Lab, store: Store, node: str) -> None:
        self.name = f"kubelet-{node}"
        super().__init__(store)
        self.lab, self.node = lab, node
        state = lab.state.node(node)
        self.host_ip = state.primary_ip
        self.cni = CniRuntime(PluginExec([state.cni_bin_dir, REFERENCE_PLUGINS],
                                         wrap=["ip", "netns", "exec", state.netns]))
        self.conf = Path(state.cni_conf_dir) / CONF_FILE
        self.running: dict[tuple[str, str], RunningPod] = {}  # written by the worker only

    def stop(self) -> None:
        """Stop the worker, then the pods' servers; the lab's teardown removes the rest."""
        super().stop()
        for pod in self.running.values():
            pod.workload.stop()
        self.running.clear()

    def on_event(self, _kind: str, resource: str, obj: dict[str, Any]) -> None:
        if resource != "pods":
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if obj["spec"].get("nodeName") == self.node or key in self.running:
            self.queue.add(key)

    # -- reconcile one pod --------------------------------------------------------------

    def sync(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        pod = self.get("pods", namespace, name)
        if pod is not None and pod["spec"].get("nodeName") != self.node:
            pod = None  # not (or no longer) this node's
        have = self.running.get((namespace, name))
        if have is not None and (pod is None or pod["metadata"]["uid"] != have.uid):
            self._kill(namespace, name, have)
            have = None
        if pod is not None and have is None:
            self._run(pod)

    def _run(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        sandbox = self.lab.add_pod(namespace, name, self.node)
        attachment = Attachment(
            uid, f"/run/netns/{sandbox.netns}", "eth0",
            args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name,
                  "K8S_POD_INFRA_CONTAINER_ID": uid})
        network = NetworkList.load(self.conf)
        try:
            result = self.cni.add(network, attachment)
            workload = Workload(name, netns=sandbox.netns, **container_ports(pod)).start()
        except (CniError, OSError) as e:
            self._forget(network, attachment, namespace, name)
            self._set_status(pod, {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "FailedCreatePodSandBox",
                 "message": str(e)[:500]}]})
            raise
        self.running[(namespace, name)] = RunningPod(uid, network, attachment, workload)
        ips = [str(ip["address"]).split("/")[0] for ip in result.get("ips", [])]
        self.lab.set_pod_ip(namespace, name, ips[0] if ips else "")
        self._set_status(pod, running_status(pod, ips, self.host_ip))

    def _kill(self, namespace: str, name: str, have: RunningPod) -> None:
        del self.running[(namespace, name)]
        have.workload.stop()
        self._forget(have.network, have.attachment, namespace, name)

    def _forget(self, network: NetworkList, attachment: Attachment, namespace: str,
                name: str) -> None:
        """CNI DEL (best effort, as kubelet's is), then the sandbox goes."""
        try:
            self.cni.delete(network, attachment)
        finally:
            self.lab.delete_pod(namespace, name)

    def _set_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        current = self.get("pods", meta["namespace"], meta["name"])
        if current is not None and current["metadata"]["uid"] == meta["uid"]:
            self.store.update_status("pods", {**current, "status": status})


def running_status(pod: dict[str, Any], ips: list[str], host_ip: str) -> dict[str, Any]:
    started = now()
    ready = [{"type": t, "status": "True", "lastTransitionTime": started}
             for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    return {
        "phase": "Running", "conditions": ready, "startTime": started,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ips[0] if ips else None, "podIPs": [{"ip": ip} for ip in ips],
        "containerStatuses": [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "",
             "containerID": f"podlab://{pod['metadata']['uid']}", "ready": True,
             "started": True, "restartCount": 0, "state": {"running": {"startedAt": started}}}
            for c in pod["spec"].get("containers", [])],
    }
