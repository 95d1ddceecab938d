"""`Lab`: an emulated VPC with nodes and pods, brought up as an ordered list of actions
(kind's shape) and always torn down whole, on success, on error and on Ctrl-C."""

from __future__ import annotations

import ipaddress
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

from podlab.cni import protocol
from podlab.datapath import netlink
from podlab.datapath.bpf import bpffs
from podlab.fakecloud import Node, Topology, default_topology
from podlab.fakecloud.ram import STS_LIFETIME
from podlab.lab import netns, resume
from podlab.lab.agents import NodeAgents
from podlab.lab.backends import backend, target_argv
from podlab.lab.cloud import LabCloud
from podlab.lab.constants import (
    CLOUD_ENDPOINT_IP,
    CLOUD_PORT,
    DEFAULT_LAB,
    KUBE_DNS_IP,
    NODE_KUBE_API,
    NODE_LOCAL_DNS_IP,
    SERVICE_CIDR,
    VPC_RESOLVERS,
)
from podlab.lab.dns import (
    COREDNS_REPLICAS,
    ClusterDns,
    NodeLocalCaches,
    VpcResolvers,
    write_node_resolv_conf,
)
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.fabric import VpcFabric
from podlab.lab.kube.access import ApiAccess
from podlab.lab.kube.controlplane import ControlPlane
from podlab.lab.linkfaults import LinkFaults
from podlab.lab.mgmt import MGMT_POOL, allocate_mgmt
from podlab.lab.ownership import (
    LAB_ENV,
    LAB_NAME,
    netns_name,
    remove_lab,
    run_lock,
)
from podlab.lab.pipeline import Step, Undo, run_all, unwound_on_failure
from podlab.lab.process import ProcessRef, owner_alive
from podlab.lab.resolv import CLUSTER_DNS
from podlab.lab.secretfile import write_secret
from podlab.lab.service_proxy import resolve as resolve_service_proxy
from podlab.lab.state import LabState, NodeState, PodState

Progress = Callable[[str], None]


class Lab:
    """A running lab. Use as a context manager; `up()`/`down()` for explicit control."""

    def __init__(
        self,
        topology: Topology | None = None,
        name: str = DEFAULT_LAB,
        *,
        backend_kind: str = "netns",
        owner_kind: str = "process",
        agents: bool = True,
        agent_settings: dict[str, object] | None = None,
        control_plane: bool | None = None,
        service_proxy: str | None = None,
        seed: int | None = None,
        attach_delay: float | None = None,
        metadata_lag: float | None = None,
        pod_metadata: bool = False,
        sts_lifetime: float = STS_LIFETIME,
        dns: bool | None = None,
        dns_nameserver: str = "nodelocal",
    ) -> None:
        """`service_proxy`: ebpf, iptables or nftables (kube-proxy's modes, the baseline);
        None is ebpf where the kernel allows it, else iptables. `seed` (of the cloud's
        fault draws), `attach_delay` and `metadata_lag` (the cloud's eventual consistency,
        in seconds) override the topology's `seed:` and `cloud:` (docs/topology.md). `dns`:
        the VPC's resolvers, the cluster DNS and a node-local cache per node (docs/dns.md);
        None is on with a control plane. `dns_nameserver`: the nameserver of ClusterFirst pods,
        the node-local cache (`nodelocal`) or the kube-dns Service (`cluster`)."""
        if not LAB_NAME.match(name):
            raise LabError(
                f"lab name {name!r}: 1-12 of a-z, 0-9 and '-', starting and ending alphanumeric"
            )
        self.name = name
        # Whether pods may read instance metadata (off: the node's RAM role stays the
        # node's), and how long the role's STS credentials last (docs/fakecloud.md).
        self.pod_metadata, self.sts_lifetime = pod_metadata, sts_lifetime
        self.topology = (topology or default_topology()).configured(
            seed=seed, attach_delay=attach_delay, metadata_lag=metadata_lag)
        self.backend = backend(backend_kind)
        self.state = LabState(
            name=name,
            owner=ProcessRef.current(),
            owner_kind=owner_kind,
            backend=backend_kind,
            topology=self.topology.to_dict(),
            fabric_netns=netns_name(name, "vpc"),
        )
        self.events = EventLog(self.state.dir / "events.jsonl")
        self.fabric = VpcFabric(name, self.state.fabric_netns, self.events)
        # Seeded link faults (docs/faults.md), with the lab's seed so a faulty run replays
        self.faults = LinkFaults(name, seed=self.topology.seed, state=self.state)
        self._processes: list[subprocess.Popen[str]] = []
        self._pods = threading.Lock()  # node runtimes add and delete pods concurrently
        self.cloud: LabCloud | None = None
        # The control plane needs agents (its node runtimes call their CNI); by default a
        # lab with agents has one, and its agents watch their pods through it.
        self.with_control_plane = agents if control_plane is None else control_plane
        if self.with_control_plane and not agents:
            raise LabError("a control plane needs the node agents (agents=True)")
        # Up front: a VPC over these would take their packets, or another lab's
        self.topology.check_vpc_clear_of({
            MGMT_POOL: "the labs' management network (each lab's host link is a /30 in it)",
            **({ipaddress.IPv4Network(SERVICE_CIDR): "the lab's Service CIDR (ClusterIPs)"}
               if self.with_control_plane else {})})
        # Services come with the control plane: no API, no Services
        self.service_proxy, self._proxy_note = (resolve_service_proxy(service_proxy)
                                                if self.with_control_plane else ("", None))
        # The API's users and certificate: made now, since the agents start first.
        self.api_access: ApiAccess | None = None
        if self.with_control_plane:
            self.api_access = ApiAccess()
            for node in self.topology.nodes:
                self.api_access.add_agent(node.name)
            agent_settings = {"kube_api": NODE_KUBE_API, "service_cidr": SERVICE_CIDR,
                              **({"service_proxy": "ebpf"} if self.service_proxy == "ebpf"
                                 else {}),
                              **(agent_settings or {})}
        self.agents = (NodeAgents(self.state, self.events, agent_settings, self.api_access)
                       if agents else None)
        # DNS (issue 19) serves pods, so it comes with the control plane
        self.dns = self.with_control_plane if dns is None else dns
        if self.dns and not self.with_control_plane:
            raise LabError("the cluster DNS needs the control plane (control_plane=True)")
        if dns_nameserver not in CLUSTER_DNS:
            raise LabError(f"dns_nameserver {dns_nameserver!r}: one of {sorted(CLUSTER_DNS)}")
        # kubelet's --cluster-dns; none without DNS, and ClusterFirst pods get the node's
        self.cluster_dns = CLUSTER_DNS[dns_nameserver] if self.dns else ""
        self.coredns = (ClusterDns(self.state, self.events, self.api_access)
                        if self.api_access and self.dns else None)  # its pods' server
        self.vpc_resolvers: VpcResolvers | None = None
        self.nodelocal: NodeLocalCaches | None = None
        self.control_plane: ControlPlane | None = None
        self._undo = Undo()  # what the actions started, to stop on `down`
        self.resuming = False  # set by `resume`: the actions adopt the world, not make it

    # -- life cycle -------------------------------------------------------------------

    def up(self, progress: Progress | None = None) -> Lab:
        say = progress or (lambda _msg: None)
        self._claim(say)
        if self._proxy_note:
            say(self._proxy_note)
        with unwound_on_failure(self.down):
            self._run_actions(say)
        return self

    def resume(self, progress: Progress | None = None) -> Lab:
        """Bring this lab back after its owner died (`podlab up --resume`): its namespaces
        and stores are adopted, its processes started again (`podlab.lab.resume`). A
        failure stops only what the resume started: the lab stays, dead, for another
        resume or `podlab clean`."""
        say = progress or (lambda _msg: None)
        old = resume.claim(self.state)
        self.resuming = True
        say(f"claimed lab {self.name!r} from its dead owner (pid {old.owner.pid})")
        self.events.emit("lab.resume", owner_pid=self.state.owner.pid,
                         dead_owner_pid=old.owner.pid)
        with unwound_on_failure(self._undo.close):
            self._run_actions(say)
        return self

    def _run_actions(self, say: Progress) -> None:
        for action in self.actions():
            started = time.monotonic()
            action.run()
            say(f"{action.title} ({time.monotonic() - started:.2f}s)")
        self.state.status = "ready"
        self.state.save()
        self.events.emit("lab.ready", nodes=len(self.state.nodes))

    def down(self) -> list[str]:
        """Remove everything this lab made; returns what was removed. Every step runs even
        when another fails; then a TeardownError names each step that failed."""
        removed: list[str] = []
        run_all([
            ("heal the link faults", self.faults.heal),
            ("stop what `up` started", self._undo.close),
            *((f"delete node {node.name}", partial(self.backend.delete_node, self.name,
                                                   node.name)) for node in self.state.nodes),
            ("stop the workloads", self._stop_workloads),
            (f"remove every object labelled {self.name!r}",
             lambda: removed.extend(remove_lab(self.name))),
        ])
        return removed

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def _claim(self, say: Progress) -> None:
        """Take the lab's name and a management subnet, atomically against other labs."""
        with run_lock():
            if self.state.dir.exists():
                try:
                    other = LabState.load(self.name)
                except (OSError, ValueError, KeyError, TypeError):
                    other = None
                if other is not None and owner_alive(other.owner):
                    raise LabError(
                        f"lab {self.name!r} already runs (owner pid {other.owner.pid}); "
                        f"`podlab down --name {self.name}` first, or pick another name"
                    )
                say(f"removing leftovers of a dead lab named {self.name!r}")
            remove_lab(self.name)
            self.state.dir.mkdir()
            with unwound_on_failure(partial(remove_lab, self.name)):
                self.state.mgmt = allocate_mgmt(self.name)
                self.state.save()
        self.events.emit("lab.claim", owner_pid=self.state.owner.pid,
                         mgmt_host_ip=self.state.mgmt.host_ip)

    def actions(self) -> list[Step]:
        """The steps of `up`, in order; `resume`'s adopt the world the first ones make."""
        if self.resuming:
            steps = [Step("adopt", f"found the VPC router and {len(self.state.nodes)} nodes "
                          "as they were", partial(resume.check_world, self.state))]
        else:
            steps = [Step("fabric", "created the VPC router", self.fabric.create),
                     Step("host-link", "connected the host to the fabric", self._connect_host)]
            steps += [Step(f"vswitch-{vsw.id}", f"added vSwitch {vsw.id} ({vsw.zone}, "
                           f"{vsw.cidr}, gateway {vsw.gateway})",
                           partial(self.fabric.add_vswitch, vsw))
                      for vsw in self.topology.vswitches]
            steps += [Step(f"node-{node.name}",
                           f"started node {node.name} ({node.instance_type}, {node.vswitch.id}, "
                           f"{node.primary_ip})", partial(self._add_node, node))
                      for node in self.topology.nodes]
        steps.append(Step("cloud", f"started the cloud's OpenAPI endpoint at {CLOUD_ENDPOINT_IP}",
                          self._start_cloud))
        if self.dns:
            steps.append(Step("vpc-dns", f"served the VPC's DNS at {', '.join(VPC_RESOLVERS)} "
                              f"({len(self.topology.internet)} names of the internet)",
                              self._start_vpc_resolvers))
        if self.service_proxy == "ebpf":
            steps.append(Step("bpffs", f"mounted the lab's bpffs at {self.bpffs}",
                              self._mount_bpffs))
        if self.agents is not None:
            steps.append(Step("agents", "started the node agents; their pools are warm",
                              partial(self._start_agents, self.agents)))
        if self.with_control_plane:
            services = ("Services and NetworkPolicy by the agents' eBPF programs"
                        if self.service_proxy == "ebpf" else
                        f"kube-proxy in {self.service_proxy} mode; NetworkPolicy not enforced")
            steps.append(Step("control-plane", "started the control plane (Kubernetes API, "
                              f"scheduler, node runtimes, {services})",
                              self._start_control_plane))
        if self.service_proxy == "ebpf":
            steps.append(Step("services", "the agents programmed the API's Services",
                              self._wait_services_programmed))
        if self.dns:
            steps.append(Step("cluster-dns", f"the cluster DNS's {COREDNS_REPLICAS} pods are "
                              f"ready behind {KUBE_DNS_IP}", self._wait_cluster_dns))
            steps.append(Step("nodelocal-dns", "started a node-local DNS cache on every node "
                              f"at {NODE_LOCAL_DNS_IP}", self._start_nodelocal))
        return steps

    @property
    def bpffs(self) -> Path:
        """The lab's bpffs: each node's agent pins its programs and maps in <node>/."""
        return self.state.dir / "bpf"

    def _mount_bpffs(self) -> None:
        """From the lab's own mount namespace: an agent's (`ip netns exec`'s is private)
        mount would be invisible here, where `down` unmounts it."""
        self._undo.push("unmount the lab's bpffs", lambda: bpffs.unmount(self.bpffs))
        bpffs.mount(self.bpffs)

    def _start_agents(self, agents: NodeAgents) -> None:
        self._undo.push("stop the node agents", agents.stop_all)  # start_all may start some
        agents.start_all()

    def _start_control_plane(self) -> None:
        self.control_plane = ControlPlane(self, self.service_proxy, self.api_access,
                                          self.coredns).start()
        self._undo.push("stop the control plane", self.control_plane.stop)

    def _wait_services_programmed(self, timeout: float = 30.0) -> None:
        """The agents list Services once the API is up (it starts after them); kube-proxy
        runs in the control plane, so its first sync is done when the control plane is."""
        deadline = time.monotonic() + timeout
        for node in self.state.nodes:
            while not protocol.call(node.agent_socket, "info")["services_synced"]:
                if time.monotonic() > deadline:
                    raise LabError(f"the agent of node {node.name} did not program the "
                                   f"Services within {timeout:.0f}s; see its log")
                time.sleep(0.02)

    def _stop_workloads(self) -> None:
        processes, self._processes = self._processes, []
        for proc in processes:
            proc.kill()
            proc.communicate()

    def _start_cloud(self) -> None:
        node_netns = {n.instance_id: n.netns for n in self.state.nodes}
        assert self.state.mgmt is not None
        self.cloud = LabCloud(self.topology, self.fabric, node_netns, self.state.mgmt.fabric_ip,
                              host_ip=self.state.mgmt.host_ip, pod_metadata=self.pod_metadata,
                              sts_lifetime=self.sts_lifetime, state=self.state.cloud_db)
        self._undo.push("stop the cloud", self.cloud.stop)
        if self.resuming:
            for fixed in resume.resync_fabric(self.cloud.model, self.fabric, node_netns):
                self.events.emit("fabric.resync", fixed=fixed)
        write_secret(self.state.cloud_admin_token_file, self.cloud.admin_token)
        self.state.cloud_admin = self.cloud.admin_url
        self.state.cloud_endpoint = f"{CLOUD_ENDPOINT_IP}:{CLOUD_PORT}"
        self.state.cloud_endpoint_host = f"{self.state.mgmt.fabric_ip}:{CLOUD_PORT}"
        self.state.save()

    def _start_vpc_resolvers(self) -> None:
        """The VPC's resolvers, and each node's resolv.conf naming them, as ECS writes it."""
        self.vpc_resolvers = VpcResolvers(self.fabric, self.topology.internet)
        self._undo.push("stop the VPC's DNS", self.vpc_resolvers.stop)
        for node in self.state.nodes:
            write_node_resolv_conf(node.netns)

    def _wait_cluster_dns(self, timeout: float = 60.0) -> None:
        """Pods may resolve once `up` returns, as they may once kubeadm's addons are up."""
        assert self.control_plane is not None
        store, deadline = self.control_plane.store, time.monotonic() + timeout
        while (store.get("deployments", "kube-system", "coredns").get("status", {})
               .get("readyReplicas", 0) < COREDNS_REPLICAS):
            if time.monotonic() > deadline:
                raise LabError(f"the cluster DNS's pods (kube-system/coredns) not ready "
                               f"within {timeout:.0f}s; `podlab get pods -n kube-system`")
            time.sleep(0.05)

    def _start_nodelocal(self) -> None:
        assert self.api_access is not None
        self.nodelocal = NodeLocalCaches(self.state, self.events, self.api_access)
        self._undo.push("stop the node-local DNS caches", self.nodelocal.stop_all)
        self.nodelocal.start_all()

    def _connect_host(self) -> None:
        assert self.state.mgmt is not None
        self.fabric.connect_host(self.state.mgmt)

    def _add_node(self, node: Node) -> None:
        ns = self.backend.create_node(self.name, node.name)
        self.fabric.plug_eni(ns, node.primary_eni_id, node.mac, ifname="eth0")
        prefixlen = node.vswitch.cidr.prefixlen
        with netlink.opened(ns) as nsr:
            index = nsr.link_lookup(ifname="eth0")[0]
            nsr.link("set", index=index, state="up")
            nsr.addr("add", index=index, address=str(node.primary_ip), prefixlen=prefixlen)
            nsr.route("add", dst="0.0.0.0/0", gateway=str(node.vswitch.gateway))
        self.fabric.route_ip(str(node.primary_ip), node.primary_eni_id)
        self.state.nodes.append(
            NodeState(
                name=node.name,
                instance_id=node.instance_id,
                instance_type=node.instance_type,
                zone=node.zone,
                vswitch=node.vswitch.id,
                primary_ip=str(node.primary_ip),
                mac=node.mac,
                netns=ns,
                gateway=str(node.vswitch.gateway),
                service_proxy=self.service_proxy,
            )
        )
        self.state.save()
        self.events.emit("node.up", node=node.name, netns=ns, ip=str(node.primary_ip))

    # -- pods -------------------------------------------------------------------------

    def add_pod(self, namespace: str, name: str, node: str, hostname: str = "") -> PodState:
        """A pod's sandbox on `node`: its network namespace, to which the CNI plugin gives
        its network, and its UTS namespace named `hostname` (the pod's name by default)."""
        self.state.node(node)
        pod = PodState(namespace, name, node, netns_name(self.name, "pod", f"{namespace}_{name}"))
        with self._pods:
            if any((p.namespace, p.name) == (namespace, name) for p in self.state.pods):
                raise LabError(f"pod {namespace}/{name} already exists in lab {self.name!r}")
            self.state.pods.append(pod)
        try:
            self.backend.create_pod(self.name, pod, hostname or name)
        except BaseException:
            with self._pods:
                self.state.pods.remove(pod)
            raise
        with self._pods:
            self.state.save()
        self.events.emit("pod.create", pod=f"{namespace}/{name}", node=node, netns=pod.netns)
        return pod

    def delete_pod(self, namespace: str, name: str) -> None:
        pod = self.state.pod(namespace, name)
        self.backend.delete_pod(self.name, pod)
        with self._pods:
            self.state.pods.remove(pod)
            self.state.save()
        self.events.emit("pod.delete", pod=f"{namespace}/{name}")

    def set_pod_ip(self, namespace: str, name: str, ip: str) -> None:
        with self._pods:
            self.state.pod(namespace, name).ip = ip
            self.state.save()

    def write_pod_files(self, namespace: str, name: str, files: Mapping[str, str]) -> None:
        self.backend.write_pod_files(self.name, self.state.pod(namespace, name), files)

    # -- running things ---------------------------------------------------------------

    def start_workload(self, target: str, name: str, *, http: Sequence[int] = (),
                       tcp_echo: Sequence[int] = (), udp_echo: Sequence[int] = (),
                       timeout: float = 10.0) -> subprocess.Popen[str]:
        """Start the agnhost-like workload on a node or in a pod; returns once it listens.
        It carries the lab's label, so `down` stops it."""
        argv = [sys.executable, "-m", "podlab.lab.workload", "--name", name]
        for flag, ports in (("--http", http), ("--tcp-echo", tcp_echo),
                            ("--udp-echo", udp_echo)):
            argv += [a for port in ports for a in (flag, str(port))]
        proc = subprocess.Popen(target_argv(self.state, target, argv),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, LAB_ENV: self.name})
        self._processes.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready or proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise LabError(f"workload {name} on {target} did not start: "
                           f"{proc.communicate()[1][-1000:]}")
        return proc

    def exec(
        self, target: str, argv: Sequence[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a node (`n1`) or in a pod (`ns/pod`)."""
        return netns.command(target_argv(self.state, target, argv), check=check)

