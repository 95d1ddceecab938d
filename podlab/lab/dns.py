"""The lab's DNS outside the cluster's pods: the VPC's resolvers and a node-local cache on
every node (docs/dns.md, "In the lab").

- The VPC resolvers, 100.100.2.136 and 100.100.2.138, answer the topology's `internet:`
  zone from the VPC router's netns, served by threads of the lab's process as the cloud's
  metadata server is: the lab's internet, so external names resolve with no internet.
- The node-local cache is one process per node (`python -m podlab.dns nodelocal`) in the
  node's netns, its own core as NodeLocal DNSCache's DaemonSet pod has. Like the agents it
  carries PODLAB_LAB, dies with the lab's owner (PR_SET_PDEATHSIG), and is restarted with
  back-off when it dies unasked (`podlab.lab.agent_restarts`): pods have no second
  nameserver to fall back to, so a dead cache is a gap of one back-off, not an outage.
- The cluster DNS (the `coredns` pods of `cluster_dns_objects`) runs in the lab's process:
  the node runtimes map CLUSTER_DNS_IMAGE to `ClusterDns.serve`. The pods and the caches
  read the API with tokens of their own, read-only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from podlab.cni.kubeclient import api_client
from podlab.cni.zygote import die_with_parent
from podlab.datapath.netlink import in_netns
from podlab.datapath.nodelocal import node_local_address
from podlab.dns import DnsRole, cluster_server, resolver_server
from podlab.kubeapi.auth import reader
from podlab.lab import netns
from podlab.lab.agent_restarts import AgentRestarts
from podlab.lab.agents import KUBE_CA
from podlab.lab.constants import (
    CLUSTER_DOMAIN,
    DNS_LOG_DIR,
    KUBE_DNS_IP,
    NODE_KUBE_API,
    NODE_LOCAL_DNS_IP,
    VPC_RESOLVERS,
)
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.fabric import VpcFabric
from podlab.lab.kube.access import ApiAccess
from podlab.lab.ownership import LAB_ENV
from podlab.lab.sandbox import write_etc
from podlab.lab.secretfile import write_secret
from podlab.lab.state import LabState

DNS_PORT = 53
NODELOCAL_METRICS_PORT = 9253  # NodeLocal DNSCache's
READY_TIMEOUT = 60.0  # as the agents': a loaded machine imports slowly
# What the caches may read: their node's pods (autopath needs each client's namespace).
NODELOCAL_USER, NODELOCAL_READS = "system:serviceaccount:kube-system:node-local-dns", ("pods",)
NODELOCAL_TOKEN = "dns-token"  # in the node's dir, beside the agent's kube-token and CA
# The cluster DNS as kubeadm installs CoreDNS; its pods read the zone's objects.
CLUSTER_DNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.1"
COREDNS_USER = "system:serviceaccount:kube-system:coredns"
COREDNS_READS = ("services", "endpointslices", "pods", "namespaces")
COREDNS_LABELS = {"k8s-app": "kube-dns"}
COREDNS_REPLICAS = 2
METRICS_PORT = 9153  # CoreDNS's prometheus plugin


def log_dir(state: LabState) -> Path:
    """Where every DNS server of the lab serves its lookup log (`podlab dns log`)."""
    return state.dir / DNS_LOG_DIR


def nodelocal_log(state: LabState, node: str) -> Path:
    return log_dir(state) / f"nodelocal-{node}.sock"


# What ECS writes on a node: the VPC's resolvers, and Alibaba's options for them.
NODE_RESOLV_CONF = "".join(f"nameserver {ip}\n" for ip in VPC_RESOLVERS) + \
    "options timeout:2 attempts:3 rotate single-request-reopen\n"


def write_node_resolv_conf(ns: str) -> None:
    """A node's resolv.conf, which `ip netns exec` (and `podlab exec`) bind over
    /etc/resolv.conf; it goes with the netns (`podlab.lab.sandbox`)."""
    write_etc(ns, {"resolv.conf": NODE_RESOLV_CONF})


def cluster_dns_objects() -> list[tuple[str, dict[str, Any]]]:
    """(resource, object) of the cluster DNS: the `coredns` Deployment and the `kube-dns`
    Service at its fixed ClusterIP, in kube-system."""
    ports = [{"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
             {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
             {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    meta = {"namespace": "kube-system", "labels": COREDNS_LABELS}
    return [
        ("deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", **meta},
            "spec": {"replicas": COREDNS_REPLICAS, "selector": {"matchLabels": COREDNS_LABELS},
                     "template": {"metadata": {"labels": COREDNS_LABELS}, "spec": {
                         "dnsPolicy": "Default",
                         "containers": [{"name": "coredns", "image": CLUSTER_DNS_IMAGE,
                                         "ports": ports}]}}}}),
        ("services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", **meta},
            "spec": {"clusterIP": KUBE_DNS_IP, "selector": COREDNS_LABELS, "ports": [
                {"name": p["name"], "port": p["containerPort"], "protocol": p["protocol"],
                 "targetPort": p["containerPort"]} for p in ports]}}),
    ]


class ClusterDns:
    """What the `coredns` pods need from the lab (a read-only API token, the API's CA), and
    serving one: the node runtime maps CLUSTER_DNS_IMAGE to `serve`, which runs the
    cluster DNS in the lab's process with its sockets in the pod's netns."""

    def __init__(self, state: LabState, events: EventLog, access: ApiAccess) -> None:
        """Made with the lab, before anything starts; `prepare` writes what it needs."""
        self.state, self.events, self.access = state, events, access
        self.token = access.tokens.add(reader(COREDNS_USER, COREDNS_READS))
        self.ca_file = log_dir(state) / "kube-ca.crt"

    def prepare(self) -> None:
        """Before its pods start: the API's CA, and the directory of the lookup logs."""
        log_dir(self.state).mkdir(exist_ok=True)
        self.ca_file.write_bytes(self.access.cert.ca_pem)

    def serve(self, pod: dict[str, Any], ns: str) -> DnsRole:
        """Started by a thread inside the pod's netns, so every thread and socket of the
        server (its list and watch of the API at the nodes' address, its forwards to the VPC
        resolvers) is the pod's, as a coredns pod's are: a NetworkPolicy or a fault on the
        pod's path meets them there."""
        socks: list[socket.socket] = []
        try:
            for port, kind in ((DNS_PORT, socket.SOCK_DGRAM), (DNS_PORT, socket.SOCK_STREAM),
                               (METRICS_PORT, socket.SOCK_STREAM)):
                socks.append(netns.listen(ns, "0.0.0.0", port, kind))
            role = cluster_server(
                api_client(NODE_KUBE_API, self.token, self.ca_file), socks[:2],
                forward=VPC_RESOLVERS, zone=CLUSTER_DOMAIN, dns_ips=[KUBE_DNS_IP],
                metrics_socks=socks[2:], events=self.events.emit,
                log_socket=str(log_dir(self.state) / f"coredns-{pod['metadata']['name']}.sock"))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return in_netns(ns, role.start)


def zone_text(internet: Mapping[str, tuple[str, ...]], ttl: int = 300) -> str:
    """The topology's `internet:` as master-file text, with an SOA at each name no other
    name of it is under (what a denial below it carries)."""
    lines = []
    for name, records in internet.items():
        parents = name.split(".")
        if not any(".".join(parents[i:]) in internet for i in range(1, len(parents))):
            lines.append(f"{name}. {ttl} IN SOA ns1.{name}. hostmaster.{name}. 1 3600 600 "
                         f"86400 {ttl}")
        for record in records:
            kind, value = record.split(" ", 1)
            value = {"CNAME": f"{value}.", "TXT": json.dumps(value)}.get(kind, value)
            lines.append(f"{name}. {ttl} IN {kind} {value}")
    return "\n".join(lines) + "\n"


class VpcResolvers:
    """100.100.2.136 and .138 on the router's loopback, UDP and TCP, answering `zone`."""

    def __init__(self, fabric: VpcFabric, zone: Mapping[str, tuple[str, ...]]) -> None:
        socks = []
        try:
            for ip in VPC_RESOLVERS:
                fabric.add_service_address(ip)
                socks += [netns.listen(fabric.netns, ip, DNS_PORT, socket.SOCK_DGRAM),
                          netns.listen(fabric.netns, ip, DNS_PORT)]
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self.role = resolver_server(zone_text(zone), socks).start()

    def stop(self) -> None:
        self.role.stop()


class NodeLocalProcess:
    """A cache's process with the part of AgentProcess's interface the restarts use: a
    pidfd, readable once it exited."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen, self.pid = popen, popen.pid
        self._pidfd = os.pidfd_open(popen.pid)
        self._polling = threading.Lock()  # the restarts poll too: close the pidfd once

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        with self._polling:
            code = self.popen.poll()
            if code is not None and self._pidfd >= 0:
                os.close(self._pidfd)
                self._pidfd = -1
            return code

    def fileno(self) -> int:
        return self._pidfd

    def reap(self) -> None:
        """Wait for a signalled cache to exit; SIGKILL one that does not within 10 s."""
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.poll()


class NodeLocalCaches:
    """One node-local cache per node, started, restarted and stopped by the lab."""

    def __init__(self, state: LabState, events: EventLog, access: ApiAccess) -> None:
        self.state, self.events = state, events
        self.token = access.tokens.add(reader(NODELOCAL_USER, NODELOCAL_READS))
        self.procs: dict[str, NodeLocalProcess] = {}
        self.restarts: AgentRestarts[NodeLocalProcess] | None = None
        self._lock = threading.Lock()

    def argv(self, node: str) -> list[str]:
        d = self.state.dir / "nodes" / node
        return [sys.executable, "-m", "podlab.dns", "nodelocal",
                "--listen", NODE_LOCAL_DNS_IP, "--cluster-dns", KUBE_DNS_IP, "--node", node,
                "--kube-api", NODE_KUBE_API, "--token-file", str(d / NODELOCAL_TOKEN),
                "--ca-file", str(d / KUBE_CA), "--vpc-resolvers", ",".join(VPC_RESOLVERS),
                "--log-socket", str(nodelocal_log(self.state, node)),
                "--metrics", f"{self.state.node(node).primary_ip}:{NODELOCAL_METRICS_PORT}"]

    def start_all(self) -> None:
        """Give every node the cache's address, start every cache, then wait for each:
        they start in parallel."""
        log_dir(self.state).mkdir(exist_ok=True)
        for node in self.state.nodes:
            node_local_address(node.netns, node.primary_ip)
        started = [(node.name, self.start(node.name, wait=False)) for node in self.state.nodes]
        for name, proc in started:
            self.wait_ready(name, proc)

    def start(self, node: str, *, wait: bool = True) -> NodeLocalProcess:
        d = self.state.dir / "nodes" / node
        write_secret(d / NODELOCAL_TOKEN, self.token)
        parent = os.getpid()
        with (d / "nodelocal.log").open("ab") as log:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.state.node(node).netns, *self.argv(node)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, LAB_ENV: self.state.name},
                preexec_fn=lambda: _as_child(parent))  # noqa: PLW1509 (no locks taken)
        proc = NodeLocalProcess(popen)
        with self._lock:
            self.procs[node] = proc
        if self.restarts is None:
            self.restarts = AgentRestarts(self._claim, self._restart, self._crashed)
        self.restarts.watch(node, proc, {})
        self.events.emit("dns.nodelocal.start", node=node, pid=proc.pid)
        if wait:
            self.wait_ready(node, proc)
        return proc

    def wait_ready(self, node: str, proc: NodeLocalProcess, timeout: float = READY_TIMEOUT
                   ) -> None:
        """Until the cache takes TCP connections on its address inside the node."""
        ns = self.state.node(node).netns
        deadline = time.monotonic() + timeout
        while not netns.connects(ns, NODE_LOCAL_DNS_IP, DNS_PORT, timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the node-local DNS cache of node {node} did not start "
                               f"({proc.returncode}): {self.log_tail(node)}")
            time.sleep(0.05)

    def log_tail(self, node: str, chars: int = 2000) -> str:
        path = self.state.dir / "nodes" / node / "nodelocal.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def kill(self, node: str) -> None:
        """SIGKILL, as a crash would: the restarts bring it back after their back-off."""
        with self._lock:
            proc = self.procs.get(node)
        if proc is not None:
            proc.popen.send_signal(signal.SIGKILL)
            self.events.emit("dns.nodelocal.killed", node=node)

    def _claim(self, node: str, proc: NodeLocalProcess) -> int | None:
        with self._lock:
            if self.procs.get(node) is not proc or proc.poll() is None:
                return None
            del self.procs[node]
            return proc.returncode

    def _restart(self, node: str, _env: dict[str, str]) -> None:
        self.start(node, wait=False)

    def _crashed(self, node: str, code: int | None, restart_in: float) -> None:
        self.events.emit("dns.nodelocal.crashed", node=node, returncode=code,
                         restart_in=round(restart_in, 1))

    def stop_all(self) -> None:
        if self.restarts is not None:
            self.restarts.stop()
            self.restarts = None
        with self._lock:
            procs = [self.procs.pop(node) for node in list(self.procs)]
        for proc in procs:
            proc.popen.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.reap()


def _as_child(parent: int) -> None:
    """In the forked child: signals the owner blocks (the supervisor waits for its stop
    signals with sigwait) unblocked, so SIGTERM stops the cache; dead with the owner."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    die_with_parent(parent)
