"""The agent's socket under clients that stall or crowd it (issue 18: a thread per
connection and no deadline let 5,000 half-sent requests wedge the agent)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podlab.cni import protocol
from podlab.cni.server import SocketServer


def _echo(line: bytes) -> dict[str, Any]:
    return {"ok": True, "got": json.loads(line)}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SocketServer, list[str]]]:
    dropped: list[str] = []
    s = SocketServer(tmp_path / "agent.sock", _echo, cap=20, workers=4, read_deadline=0.3,
                     on_drop=dropped.append)
    s.start()
    yield s, dropped
    s.stop()


def _half_sent(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(path))
    conn.sendall(b'{"op": "alloc", "pod": "def')
    return conn


def test_a_stalled_client_is_dropped_at_the_read_deadline(
        server: tuple[SocketServer, list[str]]) -> None:
    s, dropped = server
    conn = _half_sent(s.path)
    conn.settimeout(10)
    started = time.monotonic()
    assert conn.recv(1) == b""
    assert 0.2 < time.monotonic() - started < 5
    assert dropped == ["deadline"]
    conn.close()


def test_over_the_cap_a_client_is_told_busy_and_the_rest_still_served(
        server: tuple[SocketServer, list[str]]) -> None:
    s, dropped = server
    stalled = [_half_sent(s.path) for _ in range(s.cap)]
    try:
        with pytest.raises(protocol.AgentError) as busy:
            protocol.call(s.path, "info", timeout=5)
        assert busy.value.kind == "busy"
        assert dropped == ["busy"]
    finally:
        for conn in stalled:
            conn.close()
    deadline = time.monotonic() + 10
    while True:  # the server sees them close on its next reads
        try:
            assert protocol.call(s.path, "info", timeout=5)["got"] == {"op": "info"}
            break
        except protocol.AgentError:
            assert time.monotonic() < deadline, "still busy after the clients left"
            time.sleep(0.01)


def test_requests_are_answered_by_a_bounded_pool_of_threads(tmp_path: Path) -> None:
    threads: set[int] = set()
    lock = threading.Lock()

    def recorded(line: bytes) -> dict[str, Any]:
        with lock:
            threads.add(threading.get_ident())
        return _echo(line)

    s = SocketServer(tmp_path / "agent.sock", recorded, workers=4)
    s.start()
    answers: list[dict[str, Any]] = []
    clients = [threading.Thread(target=lambda: answers.append(
        protocol.call(s.path, "info", timeout=20))) for _ in range(100)]
    try:
        for c in clients:
            c.start()
        for c in clients:
            c.join()
    finally:
        s.stop()
    assert len(answers) == 100
    assert len(threads) <= 4, "a thread per request"
