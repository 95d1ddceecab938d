"""The pods' workload, in the spirit of agnhost: HTTP `/hostname` and `/clientip`, plus TCP
and UDP echo, so a probe can tell which pod answered and which source address it saw.

    python -m podlab.lab.workload --name web-0 --http 8080 --tcp-echo 9000 --udp-echo 9001

Prints `ready` on stdout once every port is bound, so a starter can wait for it. The lab's
node runtime runs `Workload` in its own process instead, one per pod, sockets in the pod.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from podlab.datapath.netlink import in_netns


class _Http(BaseHTTPRequestHandler):
    name = ""

    def do_GET(self) -> None:
        routes = {"/hostname": self.name, "/clientip": f"{self.client_address[0]}"}
        body = routes.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a pod answers thousands of probes."""


class _TcpEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while chunk := self.request.recv(65536):
            self.request.sendall(chunk)


class _UdpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


# A listener's accept queue: socketserver's default of 5 overflows when every pod of a
# reachability matrix connects at once, and a dropped SYN comes again only after 1 s.
BACKLOG = 128


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = BACKLOG


class _ThreadingHttp(ThreadingHTTPServer):
    request_queue_size = BACKLOG


class Workload:
    """One pod's servers, run by threads of this process: each socket is made inside the
    pod's netns, so a node runtime serves every pod of its node without a process each."""

    def __init__(self, name: str, *, netns: str | None = None, http: Sequence[int] = (),
                 tcp_echo: Sequence[int] = (), udp_echo: Sequence[int] = ()) -> None:
        handler = type("Http", (_Http,), {"name": name})
        made: list[tuple[type[socketserver.BaseServer], type, int]] = [
            *((_ThreadingHttp, handler, p) for p in http),
            *((_ThreadingTcp, _TcpEcho, p) for p in tcp_echo),
            *((socketserver.ThreadingUDPServer, _UdpEcho, p) for p in udp_echo)]
        self.servers: list[socketserver.BaseServer] = []
        self._started = False
        try:
            for cls, handler_cls, port in made:
                self.servers.append(_server_in(cls, handler_cls, port, netns))
        except BaseException:
            self.stop()
            raise

    def start(self) -> Workload:
        self._started = True
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            if self._started:
                server.shutdown()
            server.server_close()


def _server_in(cls: type[socketserver.BaseServer], handler: type, port: int,
               netns: str | None) -> socketserver.BaseServer:
    server: Any = cls(("", port), handler, bind_and_activate=False)  # type: ignore[call-arg]
    if netns is not None:
        server.socket.close()
        server.socket = in_netns(netns, lambda: socket.socket(server.address_family,
                                                                server.socket_type))
    try:
        server.server_bind()
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    return cast(socketserver.BaseServer, server)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podlab-workload")
    p.add_argument("--name", required=True, help="what /hostname answers")
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--tcp-echo", type=int, action="append", default=[])
    p.add_argument("--udp-echo", type=int, action="append", default=[])
    args = p.parse_args(argv)
    Workload(args.name, http=args.http, tcp_echo=args.tcp_echo,
             udp_echo=args.udp_echo).start()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
