"""The agent's Prometheus metrics: the pool read live at scrape time, cloud calls and
allocations counted as they happen."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from podlab.cni.store import Store

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class _PoolCollector(Collector):
    """Idle/used/reserved addresses per ENI and the ENI count, straight from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        ips = GaugeMetricFamily("podlab_agent_ips", "Addresses the agent holds, by ENI and "
                                "state (idle, used, reserved, releasing).",
                                labels=["eni", "state"])
        enis = GaugeMetricFamily("podlab_agent_enis", "ENIs the agent holds, by status.",
                                 labels=["status"])
        lost = GaugeMetricFamily("podlab_agent_lost_leases", "Live pods' addresses the "
                                 "cloud no longer has, until their sandboxes are recreated.",
                                 value=len(self.store.lost()))
        counts: dict[tuple[str, str], int] = {}
        for row in self.store.ips():
            counts[row.eni_id, row.state] = counts.get((row.eni_id, row.state), 0) + 1
        for (eni, state), n in sorted(counts.items()):
            ips.add_metric([eni, state], n)
        statuses: dict[str, int] = {}
        for eni_row in self.store.enis():
            statuses[eni_row.status] = statuses.get(eni_row.status, 0) + 1
        for status, n in sorted(statuses.items()):
            enis.add_metric([status], n)
        yield ips
        yield enis
        yield lost


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cloud_calls = Counter("podlab_agent_cloud_calls", "Cloud API calls, by action "
                                   "and result (OK or the error code).", ["action", "result"],
                                   registry=self.registry)
        self.cloud_latency = Histogram("podlab_agent_cloud_call_seconds", "Cloud API call "
                                       "latency.", ["action"], buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.alloc_latency = Histogram("podlab_agent_alloc_seconds", "Time to answer an "
                                       "alloc, by result (ok, capacity, busy).", ["result"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)

        self.lost_addresses = Counter("podlab_agent_lost_addresses", "Live pods' addresses "
                                      "found gone from the cloud by reconcile.",
                                      registry=self.registry)
        self.maintain_failed = Counter("podlab_agent_maintain_failed", "Maintenance rounds "
                                       "(reconcile, warm-up, reclaim) that failed, by error.",
                                       ["error"], registry=self.registry)
        self.maintain_failing = Gauge("podlab_agent_maintain_failing", "Maintenance rounds "
                                      "failed in a row: the pool cannot grow while > 0.",
                                      registry=self.registry)
        self.socket_dropped = Counter("podlab_agent_socket_dropped", "Connections the "
                                      "socket closed unanswered or answered busy, by reason "
                                      "(busy: over the cap; deadline: no request line in "
                                      "time).", ["reason"], registry=self.registry)

    def watch(self, store: Store) -> None:
        self.registry.register(_PoolCollector(store))

    def on_call(self, action: str, result: str, seconds: float) -> None:
        self.cloud_calls.labels(action, result).inc()
        self.cloud_latency.labels(action).observe(seconds)
