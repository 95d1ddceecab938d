"""podlab-cni under garbage: whatever arrives on stdin and in the CNI_* environment, the
answer is success or the spec's error object with a spec code and a non-zero exit, and a
request reaches the agent only when the input was valid. The agent here is a recording
stand-in on a unix socket, so every request the plugin would have sent is seen."""

from __future__ import annotations

import io
import json
import os
import socketserver
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podlab.cni import plugin

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 100}
REQUIRED = ("CNI_CONTAINERID", "CNI_IFNAME")


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


def invoke(stdin: str, env: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), \
            mock.patch.object(sys, "stdin", io.StringIO(stdin)), redirect_stdout(out):
        code = plugin.main()
    return code, out.getvalue()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
configs = st.fixed_dictionaries(
    {}, optional={"cniVersion": st.sampled_from(["1.0.0", "1.1.0", "0.3.1", "", "2.0"]),
                  "name": st.text(max_size=8), "type": st.just("podlab-cni"),
                  "extra": json_values})
stdins = st.one_of(st.text(max_size=40), configs.map(json.dumps),
                   json_values.map(json.dumps))
envs = st.fixed_dictionaries({}, optional={
    "CNI_COMMAND": st.sampled_from([*sorted(plugin.COMMANDS), "", "add", "NOPE"]),
    "CNI_CONTAINERID": st.sampled_from(["", "c1", "x" * 70]),
    "CNI_NETNS": st.sampled_from(["", "/run/netns/nowhere"]),
    "CNI_IFNAME": st.sampled_from(["", "eth0"]),
    "CNI_ARGS": st.sampled_from(["", "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", ";;=", "junk"]),
})


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with recording_agent() as recorder:
        yield recorder


@settings(max_examples=300, deadline=None)
@given(stdin=stdins, env=envs)
def test_any_input_gets_a_spec_answer_and_only_valid_input_reaches_the_agent(
        agent: tuple[str, list[dict[str, Any]]], stdin: str, env: dict[str, str]) -> None:
    socket, seen = agent
    seen.clear()
    try:
        conf = json.loads(stdin)
    except ValueError:
        conf = None
    if isinstance(conf, dict):  # aim every parsable config at the recorder
        stdin = json.dumps({**conf, "agent_socket": socket})
    code, out = invoke(stdin, env)
    if code != 0:
        error = json.loads(out)
        assert set(error) == {"cniVersion", "code", "msg", "details"}
        assert error["code"] in SPEC_CODES
        assert not any(r["op"] in ("add", "check") for r in seen)
        return
    command = env.get("CNI_COMMAND")
    assert command in plugin.COMMANDS
    if command in ("ADD", "CHECK", "DEL"):
        assert isinstance(conf, dict)
        assert conf.get("cniVersion") in plugin.SUPPORTED_VERSIONS
        assert all(env.get(name) for name in REQUIRED)
        assert [r["op"] for r in seen] == [command.lower()]
