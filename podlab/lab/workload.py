"""The pods' workload, in the spirit of agnhost: HTTP `/hostname` and `/clientip`, plus TCP
and UDP echo, so a probe can tell which pod answered and which source address it saw.

    python -m podlab.lab.workload --name web-0 --http 8080 --tcp-echo 9000 --udp-echo 9001

Prints `ready` on stdout once every port is bound, so a starter can wait for it.
"""

from __future__ import annotations

import argparse
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podlab-workload")
    p.add_argument("--name", required=True, help="what /hostname answers")
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--tcp-echo", type=int, action="append", default=[])
    p.add_argument("--udp-echo", type=int, action="append", default=[])
    args = p.parse_args(argv)
    handler = type("Http", (_Http,), {"name": args.name})
    servers: list[socketserver.BaseServer] = [ThreadingHTTPServer(("", port), handler)
                                              for port in args.http]
    servers += [_ThreadingTcp(("", port), _TcpEcho) for port in args.tcp_echo]
    servers += [socketserver.ThreadingUDPServer(("", port), _UdpEcho) for port in args.udp_echo]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
