"""`podlab agent`: the node agent daemon (Terway's terwayd), one per node.

Start-up order is the readiness contract: identity from metadata, quotas from the API,
the store opened and reconciled with the cloud, the pool warmed, the socket and metrics
served — and only then the CNI config written, because a node whose runtime sees a CNI
config will start pods on it. A clean stop removes the config again; a killed agent
leaves it, as on a real node, and its restart reconciles before it serves.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server
from pyroute2.netlink.exceptions import NetlinkError

from podlab.cni import protocol
from podlab.cni.cloudapi import CloudApi, CloudCallError, RoleCredentials
from podlab.cni.config import AgentConfig, ConfigError, duration
from podlab.cni.crashpoints import CrashHook, from_environment
from podlab.cni.identity import Credentials, MetadataClient, MetadataError
from podlab.cni.maintain import Maintenance
from podlab.cni.metrics import AgentMetrics
from podlab.cni.netpolicy import NodePolicy
from podlab.cni.pods import (
    NodeEnis,
    cni_result,
    node_datapath,
    pod_network,
    set_up,
    tear_down,
)
from podlab.cni.pool import BusyError, CapacityError, Lease, NodeFacts, PodRef, Pool
from podlab.cni.server import SocketServer
from podlab.cni.services import NodeServices
from podlab.cni.store import Store
from podlab.datapath.model import DatapathError, PodNetwork
from podlab.datapath.netlink import has_link
from podlab.datapath.registry import Datapath

if TYPE_CHECKING:
    from podlab.cni.kubewatch import PodWatch

PODS_READY_TIMEOUT = 30.0  # start-up (and an ADD) waits this long for the API client
FLOWS_MAX_WAIT = 10.0  # seconds a `flows` request may wait for a flow
RESERVATION_ANNOTATION = "k8s.aliyun.com/pod-ip-reservation"
# What building a pod's interface fails with: pyroute2's NetlinkError is no OSError.
DATAPATH_ERRORS = (DatapathError, OSError, NetlinkError)


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stderr per event: the agent's structured log."""
    record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event,
              **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def _freeze_heap() -> None:
    """Put what start-up made (the SDKs, the API client: most of the heap) out of the
    collector's reach. A full collection walks every tracked object, and landed on
    whichever ADD was running as a pause of 70 ms (270 ms on a loaded machine)."""
    gc.collect()
    gc.freeze()


def reservation(default: float, owner_kind: str | None,
                annotations: dict[str, str] | None) -> float:
    """Seconds a pod's address waits for it after release: StatefulSet pods and pods
    annotated `k8s.aliyun.com/pod-ip-reservation` ("true" or a duration) keep theirs."""
    value = (annotations or {}).get(RESERVATION_ANNOTATION, "").strip().lower()
    if value in ("", "false"):
        return default if owner_kind == "StatefulSet" else 0.0
    return default if value == "true" else duration(value, RESERVATION_ANNOTATION)


class Agent:
    def __init__(self, config: AgentConfig, *, crash: CrashHook | None = None,
                 events: Callable[..., None] = log_event) -> None:
        self.config = config
        self.crash = crash or from_environment()
        self.events = events
        self.metrics = AgentMetrics()
        self.pool: Pool | None = None
        self.datapath: Datapath | None = None
        self.enis = NodeEnis()
        self.pods: PodWatch | None = None  # the node's pods in the kube API, if configured
        self.services: NodeServices | None = None  # eBPF Services (service_proxy ebpf)
        self.policy: NodePolicy | None = None  # and NetworkPolicy with them
        self._pods_ready = threading.Event()
        self.server: SocketServer | None = None
        self.maintenance: Maintenance | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> Agent:
        c = self.config
        metadata = MetadataClient(c.metadata)
        me = metadata.identity()
        self.events("identity", **me.__dict__)
        credentials: Credentials | RoleCredentials
        if c.access_key_id and c.access_key_secret:
            credentials = Credentials(c.access_key_id, c.access_key_secret)
            self.events("credentials", source="config")
        else:  # STS credentials, read again from metadata before they expire
            credentials = RoleCredentials(partial(metadata.credentials, c.ram_role))
            self.events("credentials", source="ram-role",
                        access_key_id=credentials.current.access_key_id)

        def on_call(action: str, result: str, seconds: float) -> None:
            self.metrics.on_call(action, result, seconds)
            self.events("cloud_call", action=action, result=result,
                        ms=round(seconds * 1000, 1))

        cloud = CloudApi(c.endpoint, me.region, credentials, protocol=c.protocol,
                         deadline=c.cloud_deadline, on_call=on_call)
        node = NodeFacts(me.instance_id, me.instance_type, me.zone, me.vswitch_id,
                         cloud.quotas(me.instance_type))
        store = Store(c.state_dir / "agent.db")
        self.pool = Pool(c, cloud, store, node, crash=self.crash, events=self._pool_event,
                         gateways=metadata.eni_gateway)
        self.datapath = node_datapath(c.eni_mode, c.datapath)
        if c.service_proxy == "ebpf":  # before serving: an ADD attaches the programs
            self.services = NodeServices.start(c, self.metrics.registry, self.events,
                                               me.primary_ip)
            self.policy = NodePolicy.start(c, self.metrics.registry, self.events)
        self.events("datapath", name=self.datapath.name)
        self.metrics.watch(store)
        if c.kube_api:  # its client's import costs ~1 s of CPU: under the cloud calls below
            self._background(self._watch_pods, "kube-watch")
        self.pool.reconcile()
        self.pool.warm_up()
        self._serve()
        self.maintenance = Maintenance(self.pool, c, self.metrics, self.events)
        self._background(partial(self.maintenance.run, self._stop), "maintain")
        if c.kube_api:  # no ADD waits for the client, nor shares the CPU with its import
            self._pods_ready.wait(PODS_READY_TIMEOUT)
        _freeze_heap()
        self._write_cni_conf()
        self.events("ready", socket=str(c.socket), idle=len(self.pool.idle()))
        return self

    def stop(self) -> None:
        (self.config.cni_conf_dir / protocol.CONF_FILE).unlink(missing_ok=True)
        self._stop.set()
        if self.pods is not None:
            self.pods.stop()
        if self.services is not None:
            self.services.stop()
        if self.policy is not None:
            self.policy.stop()
        if self.server:
            self.server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.pool:
            self.pool.store.close()

    def _pool_event(self, event: str, **fields: Any) -> None:
        if event == "pod_lost_address":
            self.metrics.lost_addresses.inc()
        self.events(event, **fields)
        if event == "reconciled" and self.pool is not None and self.datapath is not None:
            try:  # an ENI attached again is a new device: its pods' routes come back
                if restored := self.enis.restore(self.datapath, self.pool.info()["enis"]):
                    self.events("enis_restored", enis=restored)
            except (DatapathError, OSError) as e:
                self.events("enis_restore_failed", error=str(e))

    def _watch_pods(self) -> None:
        """In its own thread, alongside start-up's cloud calls: the official client takes
        ~1 s of CPU to import."""
        from podlab.cni.kubewatch import PodWatch

        assert self.pool is not None
        self.pods = PodWatch(self.config.kube_api, self.config.node_name, self.pool,
                             self.events, token=self.config.kube_token(),
                             ca_file=self.config.kube_ca_file)
        self._pods_ready.set()
        self.pods.run()

    def _background(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _write_cni_conf(self) -> None:
        """Atomically, so a runtime never reads half a file."""
        c = self.config
        c.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        # libcni 1.1 (containerd 1.7) refuses a 1.1.0-only list; libcni >= 1.2 takes the
        # newest of cniVersions it knows.
        conf = {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": c.cni_network,
                "plugins": [{"type": "podlab-cni", "agent_socket": str(c.socket)}]}
        tmp = c.cni_conf_dir / f".{protocol.CONF_FILE}.tmp"
        tmp.write_text(json.dumps(conf, indent=2) + "\n")
        tmp.replace(c.cni_conf_dir / protocol.CONF_FILE)

    # -- the socket -------------------------------------------------------------------

    def _serve(self) -> None:
        self.server = SocketServer(
            self.config.socket, self.handle,
            on_drop=lambda reason: self.metrics.socket_dropped.labels(reason).inc())
        self.server.start()
        if self.config.metrics_address:
            host, _, port = self.config.metrics_address.rpartition(":")
            start_http_server(int(port), host or "0.0.0.0", registry=self.metrics.registry)

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line's answer. It never raises: a client always gets an answer,
        `internal` for what the agent did not expect (logged with its traceback)."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError("a request is a JSON object")
            return self.answer(request)
        except (ValueError, TypeError, KeyError) as e:
            return {"ok": False, "error": "invalid", "message": str(e)}
        except DATAPATH_ERRORS as e:
            return {"ok": False, "error": "datapath", "message": str(e)}
        except Exception as e:  # any other: answered, not a dropped connection
            self.events("request_failed", error=f"{type(e).__name__}: {e}",
                        traceback=traceback.format_exc())
            return {"ok": False, "error": "internal", "message": f"{type(e).__name__}: {e}"}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request of the socket protocol (see protocol.py)."""
        pool, dp = self._serving()
        op = str(request.get("op"))
        if op in ("add", "del", "check") and \
                (problem := protocol.ifname_problem(str(request.get("ifname", "eth0")))):
            return {"ok": False, "error": "argument", "message": f"ifname {problem}"}
        simple: dict[str, Callable[[], dict[str, Any]]] = {
            "release": lambda: {"released": pool.release(str(request["pod"]),
                                                         request.get("container"))},
            "info": lambda: {**pool.info(), "datapath": dp.name,
                             "service_proxy": self.config.service_proxy,
                             "services_synced": bool(self.services and self.services.synced),
                             "policy_synced": bool(self.policy and self.policy.synced),
                             "policy_version": self.policy.version if self.policy else 0},
            "gc": lambda: {"released": pool.gc(_names(request, "pods"))},
            "gc_containers": lambda: {"released": pool.gc_containers(
                _names(request, "containers"))},
        }
        full: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "alloc": self._alloc, "add": self._add, "del": self._del, "check": self._check,
            "status": self._status, "flows": self._flows,
            "allow_sampling": self._allow_sampling}
        if op in simple:
            return {"ok": True, **simple[op]()}
        if op in full:
            return full[op](request)
        return {"ok": False, "error": "invalid", "message": f"unknown op {op!r}"}

    def _status(self, _: dict[str, Any]) -> dict[str, Any]:
        """CNI STATUS: whether this node can take pods; not while the pool cannot grow."""
        problem = self.maintenance.problem if self.maintenance else None
        if problem:
            return {"ok": False, "error": "unavailable", "message": problem}
        return {"ok": True}

    def _serving(self) -> tuple[Pool, Datapath]:
        if self.pool is None or self.datapath is None:
            raise RuntimeError("the agent serves only once started")
        return self.pool, self.datapath

    def _alloc(self, request: dict[str, Any]) -> dict[str, Any]:
        lease = self._lease(request)
        return lease if isinstance(lease, dict) else {"ok": True, "lease": lease.to_dict()}

    def _lease(self, request: dict[str, Any]) -> Lease | dict[str, Any]:
        """The pod's lease, or the protocol's error answer; timed for the metrics."""
        pool, _ = self._serving()
        started = time.monotonic()
        owner, annotations = request.get("owner_kind"), request.get("annotations")
        if self.config.kube_api and owner is None and annotations is None and \
                self._pods_ready.wait(PODS_READY_TIMEOUT) and self.pods is not None:
            owner, annotations = self.pods.pod_facts(str(request["pod"]))
        ref = PodRef(str(request["pod"]), str(request.get("container", "")),
                     reservation(self.config.reservation_period, owner, annotations))
        result: Lease | dict[str, Any]
        try:
            result = pool.alloc(ref, timeout=float(request.get("timeout",
                                                                    self.config.alloc_timeout)))
        except CapacityError as e:
            result = {"ok": False, "error": "capacity", "message": str(e)}
        except BusyError as e:
            result = {"ok": False, "error": "busy", "message": str(e)}
        kind = str(result["error"]) if isinstance(result, dict) else "ok"
        self.metrics.alloc_latency.labels(kind).observe(time.monotonic() - started)
        return result

    # -- NetworkPolicy's flows ----------------------------------------------------------

    def _enforcing(self) -> NodePolicy:
        if self.policy is None:
            raise ValueError(f"this agent enforces no NetworkPolicy: its Services are served "
                             f"by {self.config.service_proxy}, and policy needs service_proxy "
                             "ebpf (docs/agent.md)")
        return self.policy

    def _flows(self, request: dict[str, Any]) -> dict[str, Any]:
        """The flow log after sequence number `after`, of `pod` (ns/name) and `verdict`."""
        found = self._enforcing().flows.after(
            int(request.get("after", 0)), pod=request.get("pod"), verdict=request.get("verdict"),
            limit=int(request.get("limit", 1000)),
            wait=min(float(request.get("wait", 0)), FLOWS_MAX_WAIT))
        return {"ok": True, **found}

    def _allow_sampling(self, request: dict[str, Any]) -> dict[str, Any]:
        """Until the agent restarts (then its config's flow_allow_sampling holds again)."""
        every = int(request["every"])
        if every < 0:
            raise ValueError(f"every: {every} is not >= 0 (1 in N; 0: no allowed flows)")
        self._enforcing().sample_allowed(every)
        return {"ok": True, "every": every}

    # -- pods' networks (what podlab-cni asks for) ------------------------------------

    def _add(self, request: dict[str, Any]) -> dict[str, Any]:
        """Alloc, then build the pod's interface; an address whose plumbing failed goes
        back to the pool, so a failed ADD leaves nothing behind."""
        pool, dp = self._serving()
        netns, ifname = str(request["netns"]), str(request.get("ifname", "eth0"))
        if pool.lease_of(str(request["pod"])) is not None and has_link(netns, ifname):
            return {"ok": False, "error": "exists",
                    "message": f"{ifname} already exists in {netns}: ADD twice without DEL"}
        lease = self._lease(request)
        if isinstance(lease, dict):
            return lease
        try:
            done = set_up(dp, self._network(lease, request), self.config.service_cidr,
                          self.services)
        except Exception as e:  # whatever failed, the address goes back
            pool.release(lease.pod, str(request.get("container", "")))
            if isinstance(e, DATAPATH_ERRORS):
                return {"ok": False, "error": "datapath", "message": str(e)}
            raise
        result = cni_result(str(request.get("cni_version", "1.1.0")), done)
        return {"ok": True, "lease": lease.to_dict(), "result": result}

    def _del(self, request: dict[str, Any]) -> dict[str, Any]:
        """Best effort and idempotent: tear down what is there, release the address."""
        pool, dp = self._serving()
        pod, container = str(request["pod"]), request.get("container")
        lease = pool.lease_of(pod)
        if lease is not None and request.get("netns"):
            try:
                tear_down(dp, self._network(lease, request), self.services)
            except DATAPATH_ERRORS as e:
                self.events("teardown_incomplete", pod=pod, error=str(e))
        return {"ok": True, "released": pool.release(pod, container)}

    def _network(self, lease: Lease, request: dict[str, Any]) -> PodNetwork:
        return pod_network(lease, str(request["netns"]), str(request.get("ifname", "eth0")),
                           self.enis)

    def _check(self, request: dict[str, Any]) -> dict[str, Any]:
        pool, dp = self._serving()
        lease = pool.lease_of(str(request["pod"]))
        if lease is None and (lost := pool.store.lost(str(request["pod"]))):
            return {"ok": False, "error": "datapath", "message": f"the pod's address "
                    f"{lost[0].address} is gone from the cloud (ENI {lost[0].eni_id})"}
        if lease is None:
            return {"ok": False, "error": "invalid", "message": "the pod holds no address"}
        pod = self._network(lease, request)
        problems = dp.check(None, pod) + (self.services.problems(pod.netns, pod.ifname)
                                          if self.services else [])
        if problems:
            return {"ok": False, "error": "invalid", "message": "; ".join(problems)}
        return {"ok": True}


def _names(request: dict[str, Any], key: str) -> list[str]:
    """GC's list of what is live, required: read as empty when missing (or a string read
    as its characters), it would release every live pod's address (issue 18)."""
    names = request.get(key)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{key}: a list of strings is required; GC releases what it "
                         "does not name")
    return names


def run(config_path: Path) -> int:
    """The daemon's main: start, then serve until SIGTERM/SIGINT."""
    try:
        config = AgentConfig.load(config_path)
    except ConfigError as e:
        print(f"podlab agent: {e}", file=sys.stderr)
        return 2
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before any thread starts
    os.umask(0o077)  # its store, socket and logs are the node's secrets: owner only
    try:
        agent = Agent(config).start()
    except (MetadataError, CloudCallError, OSError) as e:
        log_event("start_failed", error=str(e))
        print(f"podlab agent: cannot start: {e}", file=sys.stderr)
        return 1
    sig = signal.sigwait(stop)
    log_event("stopping", signal=signal.Signals(sig).name)
    agent.stop()
    return 0
