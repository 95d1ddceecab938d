"""Cluster DNS: a zone from the control plane, autopath, and the node-local cache, as a
chain of small stages (CoreDNS's plugin shape). docs/dns.md has the design."""

from podlab.dns.autopath import Autopath
from podlab.dns.cache import Cache
from podlab.dns.forward import Forward, ForwardError
from podlab.dns.handler import Chain, Handler, Next
from podlab.dns.kubernetes import ClusterZone, PodRecord
from podlab.dns.lookups import LookupLog
from podlab.dns.message import Request, Trace
from podlab.dns.metrics import Metrics
from podlab.dns.roles import (
    NODE_LOCAL_ADDRESS,
    VPC_RESOLVERS,
    ZONE,
    DnsRole,
    cluster_server,
    nodelocal_server,
    resolver_server,
)
from podlab.dns.server import DnsServer
from podlab.dns.static import DEFAULT_INTERNET_ZONE, StaticZone

__all__ = [
    "DEFAULT_INTERNET_ZONE", "NODE_LOCAL_ADDRESS", "VPC_RESOLVERS", "ZONE", "Autopath",
    "Cache", "Chain", "ClusterZone", "DnsRole", "DnsServer", "Forward", "ForwardError",
    "Handler", "LookupLog", "Metrics", "Next", "PodRecord", "Request", "StaticZone", "Trace",
    "cluster_server", "nodelocal_server", "resolver_server",
]
