"""podlab-cni under garbage: whatever arrives on stdin and in the CNI_* environment, the
answer is success or the spec's error object with a spec code and a non-zero exit, and a
request reaches the agent only when the input was valid. The agent here is a recording
stand-in on a unix socket, so every request the plugin would have sent is seen."""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from tests.cni_inputs import (
    COMMANDS,
    REQUIRED,
    SPEC_CODES,
    SUPPORTED_VERSIONS,
    aimed,
    envs,
    invoke,
    stdins,
)


class _Recorder(socketserver.StreamRequestHandler):
    seen: list[dict[str, Any]]

    def handle(self) -> None:
        request = json.loads(self.rfile.readline())
        self.seen.append(request)
        answer = {"ok": True, "result": {"cniVersion": request.get("cni_version", "1.1.0"),
                                         "interfaces": [], "ips": [], "routes": [],
                                         "dns": {}}}
        self.wfile.write(json.dumps(answer).encode() + b"\n")


@contextmanager
def recording_agent() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "agent.sock")
        server = socketserver.ThreadingUnixStreamServer(path, handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield path, seen
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with recording_agent() as recorder:
        yield recorder


@settings(max_examples=300, deadline=None)
@given(stdin=stdins, env=envs())
def test_any_input_gets_a_spec_answer_and_only_valid_input_reaches_the_agent(
        agent: tuple[str, list[dict[str, Any]]], stdin: str, env: dict[str, str]) -> None:
    socket, seen = agent
    seen.clear()
    stdin, conf = aimed(stdin, socket)
    code, out = invoke(stdin, env)
    if code != 0:
        error = json.loads(out)
        assert set(error) == {"cniVersion", "code", "msg", "details"}
        assert error["code"] in SPEC_CODES
        assert not any(r["op"] in ("add", "check") for r in seen)
        return
    command = env.get("CNI_COMMAND")
    assert command in COMMANDS
    if command in ("ADD", "CHECK", "DEL"):
        assert isinstance(conf, dict)
        assert conf.get("cniVersion") in SUPPORTED_VERSIONS
        assert all(env.get(name) for name in REQUIRED)
        assert [r["op"] for r in seen] == [command.lower()]
