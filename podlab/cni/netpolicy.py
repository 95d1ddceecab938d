"""NetworkPolicy on one node, beside eBPF Services (see docs/agent.md and docs/ebpf.md):
the policy maps kept equal to what the API's Pods, Namespaces and NetworkPolicies compile
to (`policywatch`), and the programs' flow events read into the node's flow log
(`flowlog`). The programs are attached with the Service programs on ADD (one `attach`);
the maps are pinned, so a killed agent leaves enforcement running and its successor
adopts the maps, writing only what changed meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from podlab.cni.config import AgentConfig
from podlab.cni.flowlog import FlowLog, describe, wall_offset_ns
from podlab.cni.metrics import LATENCY_BUCKETS
from podlab.datapath import netlink
from podlab.datapath.bpf import (
    BpfError,
    FlowReader,
    PolicyMaps,
    policy_counters,
    set_allow_sampling,
)
from podlab.datapath.bpf.policy_model import FIRST_POD_IDENTITY, PolicyState

if TYPE_CHECKING:
    from podlab.cni.policywatch import Compiled, PolicyWatch

FLOW_POLL_MS = 200  # how long one read of the ring buffer waits; bounds how late stop is
DROPS = ("default_deny", "no_policy_allows")  # policy_counters' names
FAULTS = ("ct_full", "events_lost")


def node_addresses() -> list[str]:
    """Every IPv4 address of the agent's netns, the node's: traffic to and from them is
    always allowed."""
    with netlink.opened(None) as ns:
        return sorted({str(a.get("address")) for a in ns.get_addr(family=socket.AF_INET)})


class _PolicyCounters(Collector):
    """The programs' own counters, read from their per-CPU map at scrape time: dropped
    packets by reason (the flows' reasons), allowed new connections and packets passed
    otherwise by kind, and what they could not record."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir

    def collect(self) -> Iterator[Metric]:
        families = {
            "drops": CounterMetricFamily(
                "podlab_agent_policy_drops", "Packets the NetworkPolicy programs dropped, "
                "by reason.", labels=["reason"]),
            "passes": CounterMetricFamily(
                "podlab_agent_policy_passes", "New connections the NetworkPolicy programs "
                "allowed (policy-allows, not-isolated, host) and packets they passed at "
                "once (self, established), by reason.", labels=["reason"]),
            "faults": CounterMetricFamily(
                "podlab_agent_policy_faults", "What the NetworkPolicy programs could not "
                "record: connections (ct-full), flow events (events-lost).", labels=["kind"]),
        }
        for name, n in sorted(policy_counters(self.pin_dir).items()):
            family = "drops" if name in DROPS else "faults" if name in FAULTS else "passes"
            families[family].add_metric([name.replace("_", "-")], n)
        yield from families.values()


class NodePolicy:
    """The node's policy maps and flow log. `write` is the watch's; `flows` the socket's."""

    def __init__(self, config: AgentConfig, registry: CollectorRegistry,
                 events: Callable[..., None]) -> None:
        assert config.bpf_pin_dir is not None
        self.pin_dir, self.node, self.events = config.bpf_pin_dir, config.node_name, events
        self.maps = PolicyMaps(self.pin_dir)  # what a predecessor wrote, read back
        self.sample_allowed(config.flow_allow_sampling)
        self.flows = FlowLog()
        self._reader = FlowReader(self.pin_dir)
        self._compiled: Compiled | None = None  # the last written, for the flows' names
        self.version = 0  # the newest API resourceVersion the maps enforce (agent info)
        self._stop = threading.Event()
        self.latency = Histogram(
            "podlab_agent_policy_enforcement_seconds", "From a Pod, Namespace or "
            "NetworkPolicy watch event's arrival to the policy maps written.",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.identities = Gauge("podlab_agent_policy_identities", "Identities the node's "
                                "maps know: pods' (cluster-wide) and ipBlocks' CIDRs.",
                                ["kind"], registry=registry)
        self.endpoints = Gauge("podlab_agent_policy_endpoints", "The node's pods in the "
                               "policy maps, by direction they are isolated in (none: not "
                               "isolated).", ["isolated"], registry=registry)
        self.map_entries = Gauge("podlab_agent_policy_map_entries", "Entries in the policy "
                                 "maps after the last write, by map: how near each is to its "
                                 "capacity, past which writes are refused.", ["map"],
                                 registry=registry)
        self.refused = Counter("podlab_agent_policy_write_failed", "Policy writes refused "
                               "(a map would overflow, or the kernel said no); the previous "
                               "state is kept.", registry=registry)
        registry.register(_PolicyCounters(self.pin_dir))
        self.watch: PolicyWatch | None = None  # once the client is imported

    @classmethod
    def start(cls, config: AgentConfig, registry: CollectorRegistry,
              events: Callable[..., None]) -> NodePolicy:
        """Adopt the maps, then watch the API and read flows in the background. After
        the Service programs are loaded: their load also loads the policy programs."""
        policy = cls(config, registry, events)
        threading.Thread(target=policy._watch, args=(config,), name="policy-watch",
                         daemon=True).start()
        threading.Thread(target=policy._read_flows, name="flow-reader", daemon=True).start()
        return policy

    @property
    def synced(self) -> bool:
        """Whether this agent has written the API's policies once (until then the maps
        hold what its predecessor wrote, or nothing on a new node)."""
        return self.watch is not None and self.watch.synced.is_set()

    def stop(self) -> None:
        """Stop watching and reading; the maps stay pinned, enforcing."""
        self._stop.set()
        if self.watch is not None:
            self.watch.stop()

    def sample_allowed(self, every: int) -> None:
        """1 in `every` allowed new connections becomes a flow (0: none)."""
        set_allow_sampling(self.pin_dir, every)
        self.events("flow_allow_sampling", every=every)

    def _watch(self, config: AgentConfig) -> None:
        from podlab.cni.policywatch import PolicyWatch  # the client's import: ~1 s of CPU

        self.watch = PolicyWatch(config.kube_api, self.node, node_addresses, self,
                                 self.events, token=config.kube_token(),
                                 ca_file=config.kube_ca_file).start()
        if self._stop.is_set():  # stop() came during the import, and saw no watch to stop
            self.watch.stop()

    def write(self, compiled: Compiled) -> None:
        state, before = compiled.state, self._compiled
        self._compiled = compiled  # before the maps: their first drops read it at once
        try:
            stats = self.maps.sync(state)
        except BpfError as e:  # MapFull among them, which comes before any write
            self._compiled = before
            self.refused.inc()
            self.events("policy_write_failed", error=str(e))
            return
        written, self.version = time.monotonic(), compiled.version
        for arrived in compiled.since:
            self.latency.observe(written - arrived)
        self.events("policy_written", endpoints=len(state.endpoints), events=len(compiled.since),
                    version=compiled.version, compile_ms=compiled.compile_ms,
                    written=stats.written, removed=stats.removed, swapped=stats.swapped,
                    unchanged=stats.unchanged)
        self._count(state)
        for name, n in stats.entries.items():
            self.map_entries.labels(name).set(n)

    def _count(self, state: PolicyState) -> None:
        self.identities.labels("pod").set(
            len({i for i in state.pods.values() if i >= FIRST_POD_IDENTITY}))
        self.identities.labels("cidr").set(len(set(state.cidrs.values())))
        isolation = {"none": 0, "ingress": 0, "egress": 0, "both": 0}
        for endpoint in state.endpoints.values():
            ingress, egress = endpoint.ingress is not None, endpoint.egress is not None
            isolation["both" if ingress and egress else "ingress" if ingress else
                      "egress" if egress else "none"] += 1
        for kind, n in isolation.items():
            self.endpoints.labels(kind).set(n)

    def _read_flows(self) -> None:
        while not self._stop.is_set():
            try:
                flows = self._reader.poll(FLOW_POLL_MS)
            except (BpfError, OSError) as e:
                self.events("flow_read_failed", error=str(e))
                self._stop.wait(1.0)
                continue
            if flows:
                offset, compiled = wall_offset_ns(), self._compiled
                self.flows.append(describe(f, compiled, self.node, offset) for f in flows)
        self._reader.close()
