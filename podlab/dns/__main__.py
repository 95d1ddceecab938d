"""`python -m podlab.dns cluster|nodelocal|resolver`: the servers of podlab.dns.roles as
processes, listening on :53 (or IP:PORT) of each --listen address over UDP and TCP in the
netns they were started in. Addresses bind with IP_FREEBIND, so the node-local address
may be brought up after the cache."""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from pathlib import Path

from podlab.cni.kubeclient import api_client
from podlab.dns.roles import (
    VPC_RESOLVERS,
    DnsRole,
    cluster_server,
    nodelocal_server,
    resolver_server,
)
from podlab.dns.static import DEFAULT_INTERNET_ZONE

IP_FREEBIND = 15  # linux/in.h; Python's socket module does not export it


def _endpoint(text: str, port: int) -> tuple[str, int]:
    host, sep, p = text.rpartition(":")
    return (host, int(p)) if sep and text.count(":") == 1 else (text, port)


def listen(addresses: str, port: int = 53) -> list[socket.socket]:
    """A UDP and a TCP socket on each of the comma-separated addresses."""
    socks = []
    for text in addresses.split(","):
        addr = _endpoint(text, port)
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(family, kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.bind(addr)
            socks.append(sock)
    return socks


def _metrics(text: str | None) -> list[socket.socket]:
    return [s for s in listen(text, 9153) if s.type == socket.SOCK_STREAM] if text else []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m podlab.dns")
    sub = p.add_subparsers(dest="role", required=True)
    for name in ("cluster", "nodelocal"):
        s = sub.add_parser(name)
        s.add_argument("--kube-api", required=True)
        s.add_argument("--token-file", type=Path)
        s.add_argument("--ca-file", type=Path)
        s.add_argument("--listen", required=True)
        s.add_argument("--metrics")
        s.add_argument("--log-socket")
    cluster, nodelocal = sub.choices["cluster"], sub.choices["nodelocal"]
    cluster.add_argument("--forward", default=",".join(VPC_RESOLVERS))
    nodelocal.add_argument("--cluster-dns", required=True)
    nodelocal.add_argument("--node", required=True)
    nodelocal.add_argument("--vpc-resolvers", default=",".join(VPC_RESOLVERS))
    resolver = sub.add_parser("resolver")
    resolver.add_argument("--zone-file", type=Path)
    resolver.add_argument("--listen", required=True, nargs="+")
    resolver.add_argument("--log-socket")
    return p


def build(args: argparse.Namespace) -> DnsRole:
    if args.role == "resolver":
        zone = args.zone_file.read_text() if args.zone_file else DEFAULT_INTERNET_ZONE
        return resolver_server(zone, listen(",".join(args.listen)), log_socket=args.log_socket)
    token = args.token_file.read_text().strip() if args.token_file else ""
    api = api_client(args.kube_api, token, args.ca_file)
    if args.role == "cluster":
        return cluster_server(api, listen(args.listen), forward=args.forward.split(","),
                              metrics_socks=_metrics(args.metrics), log_socket=args.log_socket)
    return nodelocal_server(api, args.node, args.cluster_dns, listen(args.listen),
                            vpc_resolvers=args.vpc_resolvers.split(","),
                            metrics_socks=_metrics(args.metrics), log_socket=args.log_socket)


def main(argv: list[str] | None = None) -> None:
    role = build(_parser().parse_args(argv)).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    role.stop()


if __name__ == "__main__":
    main()
