"""An HTTP server on a background thread, on a fresh or a given socket (the lab binds
sockets inside the VPC's namespace and hands them over)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackgroundServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1",
                 port: int = 0, sock: socket.socket | None = None) -> None:
        self.httpd = ThreadingHTTPServer((host, port), handler, bind_and_activate=sock is None)
        if sock is not None:
            self.httpd.socket.close()
            self.httpd.socket = sock
            self.httpd.server_address = sock.getsockname()[:2]
        self.httpd.daemon_threads = True
        # A short poll interval: stopping a lab waits on it for every server.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()
