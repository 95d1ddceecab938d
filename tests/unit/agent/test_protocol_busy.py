"""An agent over its connection cap answers `busy` and closes before reading the request:
the client's write then fails, yet the answer is there to read."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from podlab.cni import protocol


def test_a_busy_answer_sent_before_the_request_was_read_is_busy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "agent.sock")
    closed = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)

        def refuse() -> None:
            conn, _ = listener.accept()
            conn.sendall(json.dumps({"ok": False, "error": "busy",
                                     "message": "over the cap"}).encode() + b"\n")
            conn.close()
            closed.set()

        server = threading.Thread(target=refuse)
        server.start()
        connect = socket.socket.connect

        def connect_then_wait(sock: socket.socket, address: str) -> None:
            connect(sock, address)
            closed.wait(5)  # the refusal comes first, deterministically

        monkeypatch.setattr(socket.socket, "connect", connect_then_wait)
        with pytest.raises(protocol.AgentError) as busy:
            protocol.call(path, "info", timeout=5)
        server.join()
    assert busy.value.kind == "busy"
