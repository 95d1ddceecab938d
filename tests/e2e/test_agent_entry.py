"""The agent on its own feet: `podlab-agent` imports nothing of the lab, and a lab's agents
end when the lab's owner is killed, however it is killed."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podlab.lab.ownership import owned_processes, remove_lab
from podlab.lab.pytest_plugin import unique_lab_name

LAB_SIDE = ("podlab.lab", "podlab.kubeapi", "podlab.fakecloud")
# The owner: brings a 1-node lab up, says so, then holds it until it is killed.
OWNER = """
import sys
from podlab.fakecloud import default_topology
from podlab.lab import Lab
Lab(default_topology(1), sys.argv[1], control_plane=False).up()
print("ready", flush=True)
sys.stdin.read()
"""


def imported_modules(*argv: str) -> tuple[int, set[str]]:
    """`python -m podlab.cni *argv`'s exit code and every module loaded when it ended."""
    script = ("import json, runpy, sys\n"
              f"sys.argv = ['podlab-agent', *{list(argv)!r}]\n"
              "try:\n    runpy.run_module('podlab.cni', run_name='__main__')\n"
              "except SystemExit as e:\n    print(json.dumps([e.code, sorted(sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=True)
    code, modules = json.loads(done.stdout.splitlines()[-1])
    return code, set(modules)


@pytest.mark.parametrize(("argv", "code"), [
    (["run", "--config", "/nonexistent/agent.json"], 2),  # the daemon's imports, then a bad config
    (["zygote"], 0),  # preloads what its agents run; stdin closed at once
])
def test_the_agent_command_imports_nothing_of_the_lab(argv: list[str], code: int) -> None:
    returncode, modules = imported_modules(*argv)
    assert returncode == code
    assert "podlab.cni.agent" in modules, "the daemon was to be imported whole"
    lab_side = sorted(m for m in modules if m.startswith(LAB_SIDE))
    assert not lab_side, f"podlab-agent {argv[0]} imports the lab's modules: {lab_side}"


@pytest.mark.root
def test_agents_end_when_the_lab_owner_is_killed(tmp_path: Path) -> None:
    name = unique_lab_name()
    with (tmp_path / "owner.log").open("w") as log:
        owner = subprocess.Popen([sys.executable, "-c", OWNER, name], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert owner.stdout is not None
        ready, _, _ = select.select([owner.stdout], [], [], 120)
        said = owner.stdout.readline() if ready else "(nothing in 120 s)"
        assert said.strip() == "ready", (tmp_path / "owner.log").read_text()
        started = owned_processes(name)
        assert len(started) == 2, f"a zygote and one agent: {started}"
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 10
        while (left := owned_processes(name)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes of lab {name} outlived its owner: {left}"
    finally:
        owner.kill()
        owner.wait()
        remove_lab(name)
