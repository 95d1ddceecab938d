"""eBPF Services on one node, in place of kube-proxy (see docs/ebpf.md): the programs loaded
once (or adopted from the node's pins after a restart), the socket LB serving the node's
own netns, each pod's interface attached on ADD, and the service maps kept equal to the
API's Services by watch (`servicewatch`). Everything lives in pins, so a killed agent
leaves the datapath running and its successor adopts it without re-attaching any pod.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from podlab.cni.config import AgentConfig
from podlab.cni.metrics import LATENCY_BUCKETS
from podlab.datapath.bpf import Conntrack, MapFull, Programs, Service, ServiceMaps, SyncStats
from podlab.datapath.bpf import counters as bpf_counters
from podlab.datapath.nodelocal import node_local_service

if TYPE_CHECKING:
    from podlab.cni.servicewatch import ServiceWatch

GC_PERIOD = 30.0  # seconds between conntrack GCs (expired entries are already ignored)
DROPS = ("reject_tcp", "reject_udp", "drop_malformed", "drop_no_backend_slot", "drop_ct_full",
         "sock_rejected")  # the programs' counters that count a packet or call refused


class _DatapathCounters(Collector):
    """The programs' own counters, read from their per-CPU map at scrape time."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir

    def collect(self) -> Iterator[Metric]:
        translations = CounterMetricFamily(
            "podlab_agent_bpf_translations", "Packets and socket calls the eBPF Service "
            "programs translated, by kind.", labels=["kind"])
        drops = CounterMetricFamily(
            "podlab_agent_bpf_drops", "Packets and socket calls the eBPF Service programs "
            "refused, by reason.", labels=["reason"])
        for name, value in sorted(bpf_counters(self.pin_dir).items()):
            (drops if name in DROPS else translations).add_metric([name], value)
        yield translations
        yield drops


class NodeServices:
    """The node's programs and service maps. `update`/`sync` are the watch's writes;
    attach/detach/problems the CNI's."""

    def __init__(self, pin_dir: Path, registry: CollectorRegistry,
                 events: Callable[..., None]) -> None:
        self.pin_dir, self.events = pin_dir, events
        started = time.monotonic()
        self.programs = Programs.load(pin_dir)
        self.maps = ServiceMaps(pin_dir)  # what a predecessor programmed, read back
        self.programs.attach_sockets()  # idempotent: a predecessor's links stay
        self.programs.serve_netns(None)  # the agent runs in the node's netns
        self.conntrack = Conntrack(pin_dir)
        self.events("bpf_loaded", pin_dir=str(pin_dir), frontends=len(self.maps.state),
                    ms=round((time.monotonic() - started) * 1000, 1))
        self._lock = threading.Lock()  # ServiceMaps is one writer's
        self._stop = threading.Event()
        self.sync_latency = Histogram(
            "podlab_agent_bpf_sync_seconds", "Time to write Services into the eBPF maps, "
            "by kind (full: a relist; update: one watch event).", ["kind"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.entries = Gauge("podlab_agent_bpf_map_entries", "Entries in the eBPF service "
                             "maps after the last write, by map.", ["map"], registry=registry)
        self.refused = Counter("podlab_agent_bpf_map_full", "Writes refused because a map "
                               "would overflow (the previous state is kept), by map.",
                               ["map"], registry=registry)
        registry.register(_DatapathCounters(pin_dir))
        self.watch: ServiceWatch | None = None  # once the client is imported

    @classmethod
    def start(cls, config: AgentConfig, registry: CollectorRegistry,
              events: Callable[..., None], node_ip: str) -> NodeServices:
        """Load (or adopt), then watch the API and GC conntrack in the background.
        `node_ip`: where the pods' node-local DNS goes (`datapath.nodelocal`)."""
        assert config.bpf_pin_dir is not None
        services = cls(config.bpf_pin_dir, registry, events)
        threading.Thread(target=services._watch, args=(config, node_ip), name="service-watch",
                         daemon=True).start()
        threading.Thread(target=services._gc_loop, name="conntrack-gc", daemon=True).start()
        return services

    @property
    def synced(self) -> bool:
        """Whether this agent has written the API's Services once. Until then a new
        node's pods miss them; a restarted agent's pods have its predecessor's maps."""
        return self.watch is not None and self.watch.synced.is_set()

    def stop(self) -> None:
        """Stop watching; the programs and maps stay pinned, serving the pods."""
        self._stop.set()
        if self.watch is not None:
            self.watch.stop()

    def _watch(self, config: AgentConfig, node_ip: str) -> None:
        from podlab.cni.servicewatch import ServiceWatch  # the client's import: ~1 s of CPU

        self.watch = ServiceWatch(config.kube_api, self, self.events,
                                  token=config.kube_token(), ca_file=config.kube_ca_file,
                                  local=(node_local_service(node_ip),)).start()
        if self._stop.is_set():  # stop() came during the import, and saw no watch to stop
            self.watch.stop()

    def _gc_loop(self) -> None:
        while not self._stop.wait(GC_PERIOD):
            if removed := self.conntrack.gc():
                self.events("conntrack_gc", removed=removed)

    # -- the watch's writes -------------------------------------------------------------

    def sync(self, services: list[Service]) -> None:
        self._write("full", lambda: self.maps.sync(services))

    def update(self, cluster_ip: str, service: Service | None) -> None:
        self._write("update", lambda: self.maps.update(cluster_ip, service))

    def _write(self, kind: str, write: Callable[[], SyncStats]) -> None:
        started = time.monotonic()
        try:
            with self._lock:
                stats = write()
        except MapFull as e:
            self.refused.labels(e.map_name).inc()
            self.events("bpf_map_full", map=e.map_name, capacity=e.capacity, needed=e.needed)
            return
        self.sync_latency.labels(kind).observe(time.monotonic() - started)
        for name, n in stats.entries.items():
            self.entries.labels(name).set(n)

    # -- the CNI's ----------------------------------------------------------------------

    def attach(self, netns: str, ifname: str, pod_ip: str) -> None:
        """On the pod's interface, with no connections of its address left from an
        earlier pod whose DEL never came (its address released by the pod watch)."""
        self.conntrack.forget(pod_ip)
        self.programs.attach(netns, ifname)

    def detach(self, netns: str, ifname: str, pod_ip: str) -> None:
        """Off the pod's interface (moot where the teardown deletes the device, or moves
        an exclusive ENI to the node, which drops its qdiscs), and the pod's connections
        out of conntrack: a later pod with the same address must not inherit them."""
        try:
            self.programs.detach(netns, ifname)
        finally:  # even when the pod's netns is gone
            self.conntrack.forget(pod_ip)

    def problems(self, netns: str, ifname: str) -> list[str]:
        if self.programs.attached(netns, ifname):
            return []
        return [f"the eBPF Service programs are not attached to {ifname}"]
