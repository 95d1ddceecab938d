"""`podlab` fails in one line that ends with what to run next, spelled as this user runs
podlab; a closed pipe ends it quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podlab.lab.shell import podlab_command, runnable
from tests.unit.fake_labs import fake_lab


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's labs are, for it and the commands it runs."""
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    return tmp_path


def podlab(*argv: str) -> subprocess.CompletedProcess[str]:
    """podlab from the checkout, where `.venv/bin/podlab` runs it."""
    return subprocess.run([sys.executable, "-m", "podlab", *argv], capture_output=True,
                          text=True, check=False, timeout=60, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(("argv", "says"), [
    (["status", "--name", "nolab"], "no lab named 'nolab' (labs: other)"),
    (["exec", "n1", "--name", "nolab", "--", "true"], "no lab named 'nolab'"),
    (["exec", "--name", "other", "n9", "--", "true"], "has no node 'n9'"),
    (["exec", "--name", "other", "n1"], "nothing to run"),
    (["agent", "info", "--name", "other", "--node", "n9"], "has no node 'n9'"),
    (["up", "--name", "x", "--topology", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read"),
    (["up", "--name", "x", "--nodes", "0"], "at least one node"),
    (["up", "--name", "x", "--vswitch", "vsw-x"], "--vswitch: 'vsw-x': expected key=value"),
])
def test_one_line_with_the_next_step(run_dir: Path, argv: list[str], says: str) -> None:
    fake_lab(run_dir, "other")
    proc = podlab(*argv)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert says in line
    assert "`.venv/bin/podlab " in line  # the next step, runnable from the checkout
    assert "Bringing up" not in proc.stderr


def test_up_checks_the_name_before_bringing_up(run_dir: Path) -> None:
    proc = podlab("up", "--name", "Not_A_Name")
    assert proc.returncode == 2
    assert "'Not_A_Name' is not a lab name" in proc.stderr
    assert "Bringing up" not in proc.stderr


def test_agent_verbs_ask_the_socket_in_the_lab_state(run_dir: Path) -> None:
    state = fake_lab(run_dir, "other")
    proc = podlab("agent", "info", "--name", "other", "--node", "n2")
    assert proc.returncode == 1
    assert state.node("n2").agent_socket in proc.stderr


def test_a_closed_pipe_is_no_traceback(run_dir: Path) -> None:
    fake_lab(run_dir, "big", nodes=400)  # more JSON than a pipe holds: the write must fail
    proc = subprocess.run(f"{sys.executable} -m podlab status --name big --json | head -c1",
                          shell=True, capture_output=True, text=True, check=False, timeout=60)
    assert proc.stdout == "{"
    assert proc.stderr == ""


def _script(directory: Path) -> Path:
    script = directory / "bin" / "podlab"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


def test_the_command_is_named_as_this_user_runs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert podlab_command() == "bin/podlab"
    assert runnable("run `podlab clean`") == "run `bin/podlab clean`"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")
    assert podlab_command() == "podlab"
    monkeypatch.setattr(sys, "argv", ["bin/podlab"])  # as typed
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert podlab_command() == "bin/podlab"


def test_under_python_m_the_script_beside_the_interpreter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/somewhere/podlab/__main__.py"])
    monkeypatch.setattr(sys, "executable", str(script.parent / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert podlab_command() == "bin/podlab"
    script.unlink()
    assert podlab_command() == f"{script.parent / 'python'} -m podlab"
