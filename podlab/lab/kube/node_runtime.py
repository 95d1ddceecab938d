"""The lab's kubelet stand-in, one per node: it runs the pods bound to its node.

For a pod it creates the pod's netns, calls the CNI exactly as a container runtime does
(the conflist from the node's conf dir, plugins from its bin dir, run inside the node,
`CNI_ARGS` with `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;
K8S_POD_INFRA_CONTAINER_ID=…`), serves the pod's container ports from the netns (the
agnhost-like `Workload`, or what the lab maps the pod's image to: the cluster DNS server
for CoreDNS's image), and reports podIP, hostIP and phase Running. A pod that is gone
(or replaced by a pod of the same name) gets CNI DEL and loses its netns.

The sandbox has the pod's hostname (`spec.hostname`, else its name) in a UTS namespace of
its own, and the pod's /etc/resolv.conf (per `dnsPolicy` and `dnsConfig`) and /etc/hosts,
written as kubelet writes them (`podlab.lab.resolv`) once the CNI gave it its addresses.

Failures, as kubelet handles them: a sandbox the CNI could not create (the agent down: ADD
answers code 11, try again later) is retried with a doubling back-off for as long as the
pod exists. Every NETWORK_PERIOD the runtime asks the CNI's STATUS, as containerd does for
kubelet, and sets the Node's Ready condition from it (False, NetworkPluginNotReady, with
the plugin's message, while the agent is down); and it asks the agent which of its pods
lost their address behind its back (the `lost` of its info), and recreates those pods'
sandboxes, with new addresses, as kubelet recreates a dead sandbox.

A runtime that starts where a predecessor's sandboxes are (the lab resumed after its
owner died) adopts them, as a restarted kubelet finds its running pods: a sandbox whose pod
is still there, with the same uid, keeps its netns and address once CNI CHECK confirms the
agent holds them, and its workload (which died with the owner) is started again; any other
sandbox goes, and its pod gets a new one.

Container ports: TCP ports serve HTTP (`/hostname`, `/clientip`), TCP ports whose name
starts with `echo` serve TCP echo, UDP ports serve UDP echo.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, cast

from podlab.cni import protocol
from podlab.cni.protocol import CONF_FILE
from podlab.controllers import Controller
from podlab.kubeapi.store import Store, now
from podlab.lab.backoff import Backoff
from podlab.lab.cni_runtime import Attachment, CniError, CniRuntime, NetworkList, PluginExec
from podlab.lab.kube.host import SandboxHost
from podlab.lab.resolv import node_resolv_conf, pod_files, pod_hostname
from podlab.lab.workload import Workload

log = logging.getLogger(__name__)
REFERENCE_PLUGINS = "/usr/lib/cni"  # portmap, bandwidth, tuning for chained conflists
NETWORK = "network"  # the work queue's key for the node's network check
NETWORK_PERIOD = 5.0  # seconds, as kubelet's runtime status check
SANDBOX_BACKOFF = (0.5, 10.0)  # kubelet's is 10 s doubling to 300 s; a lab's is faster


class Served(Protocol):
    """What serves a pod from its netns: the Workload, or what an image maps to."""

    def stop(self) -> None: ...


# An image the lab runs as something of its own (the cluster DNS): (pod, its netns) -> it,
# started. Any other image is the agnhost-like Workload.
ImageServer = Callable[[dict[str, Any], str], Served]


@dataclass
class RunningPod:
    uid: str
    network: NetworkList
    attachment: Attachment
    workload: Served


@dataclass
class Retry:
    """A pod whose sandbox could not be created: not tried again before `not_before`."""

    uid: str
    backoff: Backoff = field(default_factory=lambda: Backoff(*SANDBOX_BACKOFF))
    not_before: float = 0.0


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
    def __init__(self, lab: SandboxHost, store: Store, node: str,
                 images: Mapping[str, ImageServer] | None = None) -> None:
        self.name = f"kubelet-{node}"
        super().__init__(store)
        self.lab, self.node = lab, node
        self.images = images or {}
        state = lab.state.node(node)
        self.host_ip = state.primary_ip
        self.cni = CniRuntime(PluginExec([state.cni_bin_dir, REFERENCE_PLUGINS],
                                         wrap=["ip", "netns", "exec", state.netns]))
        self.conf = Path(state.cni_conf_dir) / CONF_FILE
        # written by the worker only
        self.running: dict[tuple[str, str], RunningPod] = {}
        self.retries: dict[tuple[str, str], Retry] = {}
        self.broken: dict[tuple[str, str], str] = {}  # sandboxes to recreate, and why
        self.restarts: dict[tuple[str, str], int] = {}  # sandboxes recreated per pod

    def start(self) -> Self:
        self._adopt()
        super().start()
        self.queue.add(NETWORK)
        return self

    def _adopt(self) -> None:
        """Take over the sandboxes the lab's state holds for this node (see the module
        docstring), and queue every pod of the node: the store's subscription reports
        changes, not what was there before."""
        pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
                for p in self.store.list("pods")[0] if p["spec"].get("nodeName") == self.node}
        for sandbox in [p for p in self.lab.state.pods if p.node == self.node]:
            key = (sandbox.namespace, sandbox.name)
            self.queue.add(key)
            if not sandbox.uid:  # its owner died during the ADD: nothing to DEL by
                self.lab.delete_pod(*key)
                continue
            pod = pods.get(key)
            network = NetworkList.load(self.conf)
            attachment = self._attachment(*key, sandbox.uid, sandbox.netns)
            self.restarts[key] = sandbox.sandbox_restarts
            if pod is None or pod["metadata"]["uid"] != sandbox.uid or not sandbox.ip:
                # queued: the worker DELs it (and runs a pod of that name anew)
                self.running[key] = RunningPod(sandbox.uid, network, attachment,
                                               Workload(sandbox.name))
                continue
            try:
                self.cni.check(network, attachment)
                workload = self._serve(pod, sandbox.netns)
            except (CniError, OSError) as e:
                self.running[key] = RunningPod(sandbox.uid, network, attachment,
                                               Workload(sandbox.name))
                self.broken[key] = f"sandbox not adopted when the lab resumed: {e}"
                self.restarts[key] += 1
                continue
            self.running[key] = RunningPod(sandbox.uid, network, attachment, workload)
            status = pod.get("status", {})
            if (status.get("phase"), status.get("podIP")) != ("Running", sandbox.ip):
                self._set_status(pod, running_status(pod, [sandbox.ip], self.host_ip,
                                                     sandbox.sandbox_restarts))
        for key in pods:
            self.queue.add(key)

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
        if key == NETWORK:
            try:
                self._check_network()
            finally:
                self.queue.add(NETWORK, delay=NETWORK_PERIOD)
            return
        namespace, name = cast(tuple[str, str], key)
        pod = self.get("pods", namespace, name)
        if pod is not None and pod["spec"].get("nodeName") != self.node:
            pod = None  # not (or no longer) this node's
        have = self.running.get((namespace, name))
        if have is not None and (pod is None or pod["metadata"]["uid"] != have.uid
                                 or (namespace, name) in self.broken):
            self._kill(namespace, name, have)
            have = None
        if pod is None:
            for pods in (self.retries, self.broken, self.restarts):
                pods.pop((namespace, name), None)
        elif have is None:
            retry = self.retries.get((namespace, name))
            wait = retry.not_before - time.monotonic() if retry else 0.0
            if retry is not None and retry.uid == pod["metadata"]["uid"] and wait > 0:
                self.queue.add(key, delay=wait)  # an update of the pod is no reason to rush
            else:
                self._run(pod)

    def _run(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        key = (namespace, name)
        sandbox = self.lab.add_pod(namespace, name, self.node, pod_hostname(pod))
        sandbox.uid = uid  # saved with its address: a sandbox without one has no ADD done
        attachment = self._attachment(namespace, name, uid, sandbox.netns)
        network = NetworkList.load(self.conf)
        try:
            result = self.cni.add(network, attachment)
            ips = [str(ip["address"]).split("/")[0] for ip in result.get("ips", [])]
            node_conf = node_resolv_conf(self.lab.state.node(self.node).netns)
            self.lab.write_pod_files(namespace, name,
                                     pod_files(pod, ips, self.lab.cluster_dns, node_conf))
            workload = self._serve(pod, sandbox.netns)
        except (CniError, OSError) as e:
            with contextlib.suppress(CniError):  # best effort: the agent may be down
                self._forget(network, attachment, namespace, name)
            self._set_status(pod, {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "FailedCreatePodSandBox",
                 "message": str(e)[:500]}]})
            retry = self.retries.get(key)
            if retry is None or retry.uid != uid:
                retry = self.retries[key] = Retry(uid)
            delay = retry.backoff.next()
            retry.not_before = time.monotonic() + delay
            self.queue.add(key, delay=delay)
            log.warning("%s: sandbox of %s/%s failed, again in %.1fs: %s", self.name,
                        namespace, name, delay, e)
            return
        self.retries.pop(key, None)
        self.running[key] = RunningPod(uid, network, attachment, workload)
        restarts = self.restarts.get(key, 0)
        if key in self.broken:
            sandbox.last_problem = self.broken.pop(key)
        sandbox.health, sandbox.sandbox_restarts = "Running", restarts
        self.lab.set_pod_ip(namespace, name, ips[0] if ips else "")  # saves the state
        self._set_status(pod, running_status(pod, ips, self.host_ip, restarts))

    def _serve(self, pod: dict[str, Any], netns: str) -> Served:
        """The pod's servers, by its first container's image."""
        containers = pod["spec"].get("containers") or [{}]
        image = self.images.get(str(containers[0].get("image", "")))
        if image is not None:
            return image(pod, netns)
        return Workload(pod["metadata"]["name"], netns=netns, **container_ports(pod)).start()

    @staticmethod
    def _attachment(namespace: str, name: str, uid: str, netns: str) -> Attachment:
        return Attachment(
            uid, f"/run/netns/{netns}", "eth0",
            args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name,
                  "K8S_POD_INFRA_CONTAINER_ID": uid})

    # -- the node's network, as the CNI and the agent report it ------------------------

    def _check_network(self) -> None:
        """CNI STATUS sets the Node's Ready condition; a ready agent names the pods whose
        address the cloud took, whose sandboxes are then recreated."""
        try:
            self.cni.status(NetworkList.load(self.conf))
        except CniError as e:
            self._set_node_ready(f"Network plugin returns error: {e.msg}: "
                                 f"{(e.output or {}).get('details', '')}".rstrip(": "))
            return
        except OSError as e:
            self._set_node_ready(f"no CNI configuration: {e}")
            return
        self._set_node_ready(None)
        try:
            lost = protocol.call(self.lab.state.node(self.node).agent_socket, "info",
                                 timeout=10).get("lost", [])
        except (protocol.AgentUnavailable, protocol.AgentError):
            return  # down since STATUS: the next check tells
        for row in lost:
            key = cast(tuple[str, str], tuple(str(row["pod"]).split("/", 1)))
            if key in self.running and key not in self.broken:
                self.broken[key] = (f"address {row['address']} gone from the cloud "
                                    f"(ENI {row['eni_id']})")
                self.restarts[key] = self.restarts.get(key, 0) + 1
                state = self.lab.state.pod(*key)
                state.health, state.last_problem = "AddressLost", self.broken[key]
                self.lab.state.save()
                self.queue.add(key)

    def _set_node_ready(self, problem: str | None) -> None:
        """The Node's Ready condition: True, or False with the network's problem; written
        only when it changes, as kubelet's status updates are."""
        node = self.get("nodes", None, self.node)
        if node is None:
            return
        ready = ({"type": "Ready", "status": "True", "reason": "KubeletReady",
                  "message": "kubelet is posting ready status"} if problem is None else
                 {"type": "Ready", "status": "False", "reason": "NetworkPluginNotReady",
                  "message": f"container runtime network not ready: {problem}"})
        conditions = node["status"].get("conditions", [])
        old: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
        if (old.get("status"), old.get("message")) == (ready["status"], ready["message"]):
            return
        ready["lastTransitionTime"] = now()
        node["status"]["conditions"] = [*(c for c in conditions if c["type"] != "Ready"),
                                        ready]
        self.store.update_status("nodes", node)

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


def running_status(pod: dict[str, Any], ips: list[str], host_ip: str, restarts: int = 0
                   ) -> dict[str, Any]:
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
             "started": True, "restartCount": restarts,
             "state": {"running": {"startedAt": started}}}
            for c in pod["spec"].get("containers", [])],
    }
