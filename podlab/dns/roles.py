"""The three servers podlab runs, each a chain (CoreDNS's Corefile as code):

- cluster (the coredns pods):  cache → autopath → kubernetes zone → forward . VPC resolvers
- nodelocal (one per node):    cache → autopath (its node's pods) → forward: the cluster
  zone and reverse zones over TCP to the cluster DNS, the rest to the VPC resolvers
- resolver (the VPC's):        a static zone (the lab's internet)

Each constructor takes sockets the caller bound (in the right netns) and returns a
`DnsRole` to start() and stop()."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from podlab.cni.listwatch import ListWatch
from podlab.dns.autopath import Autopath
from podlab.dns.cache import Cache
from podlab.dns.forward import Forward
from podlab.dns.handler import Chain
from podlab.dns.kubernetes import REVERSE_ZONES, ClusterZone
from podlab.dns.kubewatch import ZoneReader, cluster_watch, node_pods_watch
from podlab.dns.lookups import LookupLog
from podlab.dns.metrics import Metrics
from podlab.dns.server import DnsServer
from podlab.dns.static import DEFAULT_INTERNET_ZONE, StaticZone

ZONE = "cluster.local"
NODE_LOCAL_ADDRESS = "169.254.20.10"
VPC_RESOLVERS = ("100.100.2.136", "100.100.2.138")
_log = logging.getLogger(__name__)


def _events(event: str, **fields: Any) -> None:
    _log.warning("%s %s", event, fields)


@dataclass
class DnsRole:
    server: DnsServer
    watch: ListWatch | None = None
    reader: ZoneReader | None = None  # which pod an address is, for whoever asks

    def start(self) -> DnsRole:
        if self.watch is not None:
            self.watch.start()
        self.server.start()
        return self

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        self.server.stop()


def _split(socks: Sequence[socket.socket]) -> tuple[list[socket.socket], list[socket.socket]]:
    """UDP and TCP sockets, told apart by their type."""
    return ([s for s in socks if s.type == socket.SOCK_DGRAM],
            [s for s in socks if s.type == socket.SOCK_STREAM])


def cluster_server(api: client.ApiClient, socks: Sequence[socket.socket], *,
                   forward: Sequence[str] = VPC_RESOLVERS, zone: str = ZONE,
                   dns_ips: Sequence[str] = (), metrics_socks: Sequence[socket.socket] = (),
                   log_socket: str | None = None,
                   events: Callable[..., None] = _events) -> DnsRole:
    """The cluster DNS (what a coredns pod runs): `socks` UDP and TCP on :53 in the pod's
    netns; `dns_ips`: the kube-dns ClusterIP, for ns.dns.<zone>."""
    metrics = Metrics()
    cluster = ClusterZone(zone, dns_ips)
    reader = ZoneReader(cluster)
    fwd = Forward([(".", list(forward), "udp")], metrics=metrics)
    chain = Chain([Cache(metrics=metrics),
                   Autopath(zone, reader.namespace_of, metrics=metrics), cluster, fwd])
    udp, tcp = _split(socks)
    server = DnsServer(chain, udp, tcp, metrics=metrics, log=LookupLog(pod_of=reader.pod_of),
                       metrics_socks=metrics_socks, log_socket=log_socket)
    return DnsRole(server, cluster_watch(api, reader, events), reader)


def nodelocal_server(api: client.ApiClient, node: str, cluster_dns: str,
                     socks: Sequence[socket.socket], *,
                     vpc_resolvers: Sequence[str] = VPC_RESOLVERS, zone: str = ZONE,
                     metrics_socks: Sequence[socket.socket] = (),
                     log_socket: str | None = None,
                     events: Callable[..., None] = _events) -> DnsRole:
    """The node-local cache of `node`: `cluster_dns` the kube-dns ClusterIP (or ip:port),
    reached over TCP from the node's netns, so through the node's Service path."""
    metrics = Metrics()
    reader = ZoneReader()
    fwd = Forward([(zone, [cluster_dns], "tcp"),
                   *((z, [cluster_dns], "tcp") for z in REVERSE_ZONES),
                   (".", list(vpc_resolvers), "udp")], metrics=metrics)
    chain = Chain([Cache(metrics=metrics),
                   Autopath(zone, reader.namespace_of, metrics=metrics), fwd])
    udp, tcp = _split(socks)
    server = DnsServer(chain, udp, tcp, metrics=metrics, log=LookupLog(pod_of=reader.pod_of),
                       metrics_socks=metrics_socks, log_socket=log_socket)
    return DnsRole(server, node_pods_watch(api, node, reader, events), reader)


def resolver_server(zone_records: str, socks: Sequence[socket.socket], *,
                    log_socket: str | None = None) -> DnsRole:
    """A VPC resolver: `zone_records` master-file text (DEFAULT_INTERNET_ZONE: aliyun.com
    and example.com)."""
    udp, tcp = _split(socks)
    return DnsRole(DnsServer(Chain([StaticZone(zone_records or DEFAULT_INTERNET_ZONE)]),
                             udp, tcp, log_socket=log_socket))
