"""The agent's unix socket, bounded in every way a client could wedge it.

One thread accepts connections and reads their request lines (a selector, non-blocking
sockets); a fixed pool of worker threads answers the requests and writes the answers.
A connection waiting for its line costs a descriptor, not a thread: with a thread each,
5,000 half-sent requests made 5,013 threads, and the agent answered nothing for minutes
once they closed (issue 18).

- A connection must send its request line within `read_deadline`, or it is closed.
- Above `cap` open connections a new one is answered `busy` at once and closed, which
  the plugin turns into CNI 11 (try again later), as it does a full listen backlog.
- An answer must be taken within WRITE_DEADLINE.

Not asyncio: its streams cost a hop back to the loop for every answer, +65 µs a request
against socketserver's thread per connection here; a worker that writes its own answer
costs less than either (-50 µs).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

READ_DEADLINE = 5.0  # seconds to send the request line: a runtime's plugin sends at once
WRITE_DEADLINE = 5.0
WORKERS = 64  # requests answered at once; a burst's allocs wait on one filler anyway
MAX_CONNECTIONS = 4096
BACKLOG = 256  # a burst of pods connects at once; socketserver's 5 made connects fail
MAX_REQUEST = 1 << 20

Handler = Callable[[bytes], dict[str, Any]]


def connection_cap() -> int:
    """MAX_CONNECTIONS, or half the process's descriptors if that is fewer: the rest are
    the store's, netlink's and the watches'."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(MAX_CONNECTIONS, soft // 2))


class SocketServer:
    def __init__(self, path: Path, handle: Handler, *, cap: int | None = None,
                 workers: int = WORKERS, read_deadline: float = READ_DEADLINE,
                 on_drop: Callable[[str], None] = lambda reason: None) -> None:
        """`handle` answers one request line and never raises; `on_drop(reason)` is told
        of each connection closed unanswered (`deadline`) or answered `busy`."""
        self.path, self.handle, self.on_drop = path, handle, on_drop
        self.cap = cap or connection_cap()
        self.read_deadline = read_deadline
        self._workers = ThreadPoolExecutor(workers, thread_name_prefix="socket")
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._wake, self._woken = socket.socketpair()
        # connections still reading, oldest first (so by deadline), with what they sent
        self._reading: dict[socket.socket, tuple[float, bytearray]] = {}
        self._open = 0  # connections accepted and not yet closed
        self._lock = threading.Lock()  # _open: the accepting thread and the workers
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="socket", daemon=True)

    def start(self) -> None:
        """Listen (root only from the socket's first instant) and serve in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self._listener.bind(str(self.path))
        finally:
            os.umask(old)
        self._listener.listen(BACKLOG)
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._woken, selectors.EVENT_READ)
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stopping = True
            self._wake.send(b"x")
            self._thread.join(timeout=10)
        self._workers.shutdown(wait=False, cancel_futures=True)
        for sock in (*self._reading, self._listener, self._wake, self._woken):
            sock.close()
        self._selector.close()
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(self._expire()):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._woken:
                    self._read(cast(socket.socket, key.fileobj))

    def _accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                conn, _ = self._listener.accept()
            except OSError:  # none left (or no descriptor: the cap keeps us far from it)
                return
            with self._lock:
                full = self._open >= self.cap
                self._open += not full
            if full:
                self._refuse(conn)
                continue
            conn.setblocking(False)
            self._reading[conn] = (time.monotonic() + self.read_deadline, bytearray())
            self._selector.register(conn, selectors.EVENT_READ)
            self._read(conn)  # its line is often there already

    def _read(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        _, sent = self._reading[conn]
        sent += chunk
        if chunk and b"\n" not in chunk and len(sent) <= MAX_REQUEST:
            return
        del self._reading[conn]
        self._selector.unregister(conn)
        if not chunk:  # closed without a whole request
            self._close(conn)
        else:  # a request too long fails as JSON, as it did
            self._workers.submit(self._answer, conn, bytes(sent))

    def _answer(self, conn: socket.socket, line: bytes) -> None:
        """In a worker: answer, and write the answer itself."""
        try:
            answer = self.handle(line)
            conn.settimeout(WRITE_DEADLINE)
            conn.sendall(_line(answer))
        except OSError:
            pass  # the client left, or does not read its answer
        finally:
            self._close(conn)

    def _expire(self) -> float | None:
        """Close connections past their read deadline; seconds to the next deadline."""
        now = time.monotonic()
        while self._reading:
            conn, (deadline, _) = next(iter(self._reading.items()))
            if deadline > now:
                return deadline - now
            del self._reading[conn]
            self._selector.unregister(conn)
            self._close(conn)
            self.on_drop("deadline")
        return None

    def _refuse(self, conn: socket.socket) -> None:
        self.on_drop("busy")
        try:
            conn.setblocking(False)
            conn.send(_line({"ok": False, "error": "busy", "message": (
                f"the agent serves {self.cap} connections at most; try again")}))
        except OSError:
            pass
        conn.close()

    def _close(self, conn: socket.socket) -> None:
        conn.close()
        with self._lock:
            self._open -= 1


def _line(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode() + b"\n"
