"""The README's "Using a lab" block works as a newcomer pastes it: top to bottom, every line
exits 0, on a machine where another lab is already running, which it leaves alone."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from podlab.lab import Lab
from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import unique_lab_name
from tests.e2e.helpers import ping, podlab

ROOT = Path(__file__).parents[2]
LAB_COMMANDS = {"up", "status", "exec", "logs", "agent", "kubeconfig", "apply", "get", "probe",
                "reach", "flows", "check", "dns", "down"}  # those that act on one lab
UNTIL_CTRL_C = ("tcpdump", "fakecloud serve")  # a pasted block would stop at them


def using_a_lab() -> list[str]:
    """The lines of the section's shell block; the first sets LAB, the lab's name."""
    section = (ROOT / "README.md").read_text().split("\n## Using a lab\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def podlab_calls(line: str) -> list[list[str]]:
    """The `.venv/bin/podlab ...` invocations in a line, inside `$(...)` too."""
    calls: list[list[str]] = []
    for word in shlex.split(line.replace("$(", " ").replace(")", " "), comments=True):
        if word == ".venv/bin/podlab":
            calls.append([])
        elif calls:
            calls[-1].append(word)
    return calls


def test_each_line_names_its_lab_and_ends() -> None:
    lines = using_a_lab()
    assert lines[0].startswith("LAB=")
    for line in lines:
        for call in podlab_calls(line):
            if call[0] in LAB_COMMANDS:
                assert "--name" in call, line
        if any(word in line for word in UNTIL_CTRL_C):
            assert line.startswith("timeout ") or "-- timeout " in line, line


@pytest.mark.root
def test_the_block_runs_as_written_beside_another_lab(lab: Lab) -> None:
    name = unique_lab_name()
    try:
        for line in using_a_lab()[1:]:
            proc = subprocess.run(["bash", "-c", f"LAB={name}\n{line}"], cwd=ROOT,
                                  capture_output=True, text=True, check=False, timeout=300)
            assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    finally:
        podlab("down", "--name", name)
    assert leftovers(name) == []
    assert podlab("status", "--name", lab.name).returncode == 0
    assert ping(lab, "n1", lab.state.node("n2").primary_ip)
