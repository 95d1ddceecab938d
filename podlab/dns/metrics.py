"""CoreDNS's metric names, in a registry of the server's own (several servers share the
lab's process), served over HTTP from a socket the caller made (inside a netns).

A hot path may count in plain ints and hand the registry a fold (`on_collect`) that adds
them to the counters when the registry is read: an `inc()` per cache hit cost more than
the rest of the hit (docs/dns.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class _Folds(Collector):
    """Registered first: the registry collects in registration order, so the folds have
    run before any counter is read, by a scrape or `get_sample_value` alike."""

    def __init__(self) -> None:
        self.folds: list[Callable[[], None]] = []

    def collect(self) -> Iterator[Metric]:
        for fold in self.folds:
            fold()
        return iter(())


class Metrics:
    def __init__(self, server: str = "dns://:53") -> None:
        self.server = server
        self.registry = CollectorRegistry()
        r = self.registry
        self._folds = _Folds()
        r.register(self._folds)
        self.requests = Counter("coredns_dns_requests_total", "Counter of DNS requests made per "
                                "zone, protocol and family.",
                                ["server", "zone", "proto", "family", "type"], registry=r)
        self.responses = Counter("coredns_dns_responses_total", "Counter of response status "
                                 "codes.", ["server", "zone", "rcode", "plugin"], registry=r)
        self.duration = Histogram("coredns_dns_request_duration_seconds", "Histogram of the "
                                  "time (in seconds) each request took.",
                                  ["server", "zone", "type"], registry=r,
                                  buckets=(.00025, .0005, .001, .002, .004, .008, .016, .032,
                                           .064, .128, .256, .512, 1.024, 2.048, 4.096, 8.192))
        self.autopath_success = Counter("coredns_autopath_success_total", "Counter of requests "
                                        "that did autopath.", ["server"], registry=r
                                        ).labels(server)
        self.cache_hits = Counter("coredns_cache_hits_total", "The count of cache hits.",
                                  ["server", "type", "zones", "view"], registry=r)
        self.cache_misses = Counter("coredns_cache_misses_total", "The count of cache misses.",
                                    ["server", "zones", "view"], registry=r
                                    ).labels(server, ".", "")
        self.cache_entries = Gauge("coredns_cache_entries", "The number of elements in the "
                                   "cache.", ["server", "type", "zones", "view"], registry=r)
        self.forward_duration = Histogram("coredns_proxy_request_duration_seconds", "Histogram "
                                          "of the time each request took.",
                                          ["proxy_name", "to", "rcode"], registry=r)

    def on_collect(self, fold: Callable[[], None]) -> None:
        """Runs `fold` whenever the registry is read, before its counters are."""
        self._folds.folds.append(fold)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    async def serve_http(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """One scrape: any request gets the exposition."""
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = self.text()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
