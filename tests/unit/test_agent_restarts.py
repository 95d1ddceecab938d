"""The lab's restart policy for crashed agents, with fake processes: a pipe that turns
readable stands for a pidfd whose process exited."""

from __future__ import annotations

import os
import threading
from typing import cast

import pytest

from podlab.cni.zygote import AgentProcess
from podlab.lab import agent_restarts
from podlab.lab.agent_restarts import AgentRestarts

WAIT = 10.0


class FakeAgent:
    def __init__(self) -> None:
        self.returncode: int | None = None  # set once reaped, as AgentProcess's
        self.exit_code: int | None = None
        self._r, self._w = os.pipe()

    def fileno(self) -> int:
        return self._r

    def crash(self, code: int) -> None:
        self.exit_code = code
        os.write(self._w, b"x")


class Node:
    """What NodeAgents does for the restarts: hands over dead agents, starts new ones."""

    def __init__(self) -> None:
        self.agent = FakeAgent()
        self.crashes: list[tuple[int | None, float]] = []
        self.started = threading.Semaphore(0)
        self.restarts = AgentRestarts(self.claim, self.restart, self.crashed)
        self.restarts.watch("n1", cast(AgentProcess, self.agent), {})

    def claim(self, _name: str, proc: AgentProcess) -> int | None:
        if proc is not cast(AgentProcess, self.agent):
            return None
        self.agent.returncode = self.agent.exit_code
        return self.agent.returncode

    def restart(self, name: str, env: dict[str, str]) -> None:
        self.agent = FakeAgent()
        self.restarts.watch(name, cast(AgentProcess, self.agent), env)
        self.started.release()

    def crashed(self, _name: str, code: int | None, delay: float) -> None:
        self.crashes.append((code, delay))


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_restarts, "RESTART_INITIAL", 0.01)
    monkeypatch.setattr(agent_restarts, "RESTART_CAP", 0.04)


def crash_three_times(node: Node) -> list[float]:
    try:
        for code in (-9, 1, 2):
            node.agent.crash(code)
            assert node.started.acquire(timeout=WAIT), "restarted"
    finally:
        node.restarts.stop()
    assert [code for code, _ in node.crashes] == [-9, 1, 2]
    return [delay for _, delay in node.crashes]


@pytest.mark.usefixtures("fast")
def test_crashes_back_off_doubling_to_the_cap() -> None:
    assert crash_three_times(Node()) == [0.01, 0.02, 0.04]


@pytest.mark.usefixtures("fast")
def test_a_healthy_run_starts_the_back_off_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_restarts, "HEALTHY_AFTER", 0.0)  # every run was long enough
    assert crash_three_times(Node()) == [0.01, 0.01, 0.01]


@pytest.mark.usefixtures("fast")
def test_an_agent_the_lab_stops_itself_is_not_restarted() -> None:
    node = Node()
    try:
        node.restarts.forget("n1")
        node.agent.crash(-15)
        assert not node.started.acquire(timeout=0.3), "restarted an agent the lab stopped"
    finally:
        node.restarts.stop()
    assert node.crashes == []
