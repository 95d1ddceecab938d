"""A lab's life cycle cannot leak: a failure after any step of `up` (the lab's actions and
its control plane's start steps, listed from the code, so a new step is covered without
editing this file) leaves nothing on the machine and nothing running in this process; a
teardown step that fails does not stop the others; a `podlab up` supervisor killed at any
step leaves only what `podlab clean` removes; `down --all` asks before it acts."""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from podlab.lab import Lab, LabState
from podlab.lab.kube.controlplane import ControlPlane
from podlab.lab.ownership import LAB_ENV, leftovers
from podlab.lab.pipeline import Step, TeardownError
from podlab.lab.process import ProcessRef, wait_gone
from podlab.lab.pytest_plugin import unique_lab_name
from tests.e2e.helpers import host_netns, podlab

pytestmark = pytest.mark.root

_LISTED = Lab(name="listed")  # the default lab, as `podlab up` makes it; never brought up
UP_STEPS = [step.id for step in _LISTED.actions()]
CONTROL_PLANE_STEPS = [step.id for step in ControlPlane(_LISTED, dns=_LISTED.coredns).steps()]
RELEASE_TIMEOUT = 15.0


class InjectedFailure(Exception):
    pass


def _fail_after(step: Step) -> Step:
    def run() -> None:
        step.run()
        raise InjectedFailure(f"injected after step {step.id}")

    return dataclasses.replace(step, run=run)


def _held_by_this_process() -> set[str]:
    """Threads and sockets of this process: a torn-down lab must have released its own."""
    held = {f"thread {t.name} ({t.ident})" for t in threading.enumerate()}
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # the fd of this listing, closed by now
        if target.startswith("socket:"):
            held.add(f"socket fd {fd.name} {target}")
    return held


def _assert_released(before: set[str]) -> None:
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while (left := _held_by_this_process() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still held after teardown: {sorted(left)}"


@pytest.mark.parametrize(("owner", "step"), [
    *((Lab, step) for step in UP_STEPS),
    *((ControlPlane, step) for step in CONTROL_PLANE_STEPS),
], ids=[*(f"up-{s}" for s in UP_STEPS), *(f"control-plane-{s}" for s in CONTROL_PLANE_STEPS)])
def test_a_failure_after_any_step_of_up_leaves_nothing(
        owner: type[Lab] | type[ControlPlane], step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: Callable[[Lab | ControlPlane], list[Step]] = (
        Lab.actions if owner is Lab else ControlPlane.steps)  # type: ignore[assignment]
    monkeypatch.setattr(owner, listed.__name__, lambda self: [
        _fail_after(s) if s.id == step else s for s in listed(self)])
    before = _held_by_this_process()
    name = unique_lab_name()
    with pytest.raises(InjectedFailure, match=f"after step {step}$"):
        Lab(name=name).up()
    assert leftovers(name) == []
    _assert_released(before)


def test_down_runs_every_step_when_one_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _held_by_this_process()
    name = unique_lab_name()
    lab = Lab(name=name, agents=False).up()
    delete_node = lab.backend.delete_node

    def n1_is_stuck(lab_name: str, node: str) -> None:
        if node == "n1":
            raise OSError("n1 is stuck")
        delete_node(lab_name, node)

    monkeypatch.setattr(lab.backend, "delete_node", n1_is_stuck)
    with pytest.raises(TeardownError, match=r"delete node n1: OSError\('n1 is stuck'\)") as e:
        lab.down()
    assert [what for what, _ in e.value.failures] == ["delete node n1"]
    assert leftovers(name) == []  # the cloud stopped before, the sweep ran after
    _assert_released(before)


# -- a killed `podlab up` supervisor -----------------------------------------------------


def _start_up(name: str) -> tuple[subprocess.Popen[str], int]:
    """`podlab up` as a user runs it, and its supervisor's pid (from its first line)."""
    up = subprocess.Popen([sys.executable, "-m", "podlab", "up", "--name", name],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    assert up.stderr is not None
    first = up.stderr.readline()
    found = re.search(r"supervisor pid (\d+)", first)
    assert found, first
    return up, int(found.group(1))


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid, timeout=10)


# Killed while claiming, during each later step of `up`, and once the lab is up.
KILL_POINTS = ["claim", *(f"after-{step}" for step in UP_STEPS[:-1]), "ready"]


@pytest.mark.parametrize("when", KILL_POINTS)
def test_a_killed_supervisor_leaves_only_what_clean_removes(when: str) -> None:
    name = unique_lab_name()
    up, supervisor = _start_up(name)
    assert up.stderr is not None
    try:
        if when == "ready":
            assert up.wait(timeout=120) == 0
        else:
            done = KILL_POINTS.index(when)  # steps finished before the kill
            while done and (line := up.stderr.readline()):
                done -= line.startswith(" ✓ ")
        _kill(supervisor)
        said = up.communicate(timeout=30)[1]
    finally:
        up.kill()
    # A kill in the last, short steps may land after the lab is up; one while claiming,
    # with the agents' start still ahead, cannot.
    if when == "claim" or (when != "ready" and up.returncode != 0):
        assert up.returncode == 1
        assert (f"the supervisor of lab {name!r} (pid {supervisor}) was killed by SIGKILL "
                "before the lab was up") in said
        assert f"podlab clean --name {name}`" in said  # as `.venv/bin/podlab ...` too
    clean = podlab("clean", "--name", name)
    assert clean.returncode == 0, clean.stderr
    assert leftovers(name) == []
    # By name too: a netns made but not yet labelled when the kill came is no label's.
    assert [n for n in host_netns() if n.startswith(f"podlab-{name}-")] == []


def test_clean_dry_run_says_why_then_clean_ends_the_dead_labs_processes() -> None:
    name = unique_lab_name()
    up, supervisor = _start_up(name)
    assert up.wait(timeout=120) == 0
    # A process of the lab that does not die with its owner: `clean` must end it.
    orphan = subprocess.Popen(["sleep", "600"], env={**os.environ, LAB_ENV: name},
                              start_new_session=True)
    try:
        alive = podlab("clean", "--name", name)
        assert alive.returncode == 1
        assert f"lab {name!r} runs (owner pid {supervisor})" in alive.stderr

        _kill(supervisor)
        objects = [item for item in leftovers(name) if not item.startswith("process")]
        dry = podlab("clean", "--dry-run", "--name", name)
        assert dry.returncode == 0, dry.stderr
        assert re.search(rf"lab {name}: owner pid {supervisor} \(started \d{{4}}-\d\d-\d\d "
                         r"\d\d:\d\d:\d\d UTC\) is gone", dry.stdout), dry.stdout
        assert f"would remove process {orphan.pid}" in dry.stdout
        assert f"would remove netns podlab-{name}-vpc" in dry.stdout
        assert [item for item in leftovers(name) if not item.startswith("process")] == objects
        assert orphan.poll() is None

        clean = podlab("clean", "--name", name)
        assert clean.returncode == 0, clean.stderr
        assert f"removed process {orphan.pid}" in clean.stdout
        assert orphan.wait(timeout=10) == -signal.SIGTERM
        assert leftovers(name) == []
    finally:
        orphan.kill()
        podlab("clean", "--name", name)


# -- down --all --------------------------------------------------------------------------


@pytest.fixture
def two_dead_labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two labs in a run dir of their own (so `down --all` sees no one else's), whose
    owner is dead: a pid of this process with another start time."""
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    dirs = []
    for name in (unique_lab_name(), unique_lab_name()):
        state = LabState(name=name, owner=ProcessRef(os.getpid(), 0), owner_kind="supervisor",
                         backend="netns", topology={}, fabric_netns=f"podlab-{name}-vpc")
        state.dir.mkdir()
        state.save()
        dirs.append(state.dir)
    return dirs


def _down_all(*flags: str, stdin: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podlab", "down", "--all", *flags],
                          stdin=stdin, capture_output=True, text=True, check=False, timeout=60)


def test_down_all_lists_the_labs_and_without_a_terminal_needs_yes(
        two_dead_labs: list[Path]) -> None:
    refused = _down_all(stdin=subprocess.DEVNULL)
    assert refused.returncode == 1
    assert "add --yes to confirm" in refused.stderr
    assert all(d.name in refused.stdout for d in two_dead_labs)
    assert all(d.exists() for d in two_dead_labs)

    done = _down_all("--yes", stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert all(f"lab {d.name!r} is down" in done.stdout for d in two_dead_labs)
    assert not any(d.exists() for d in two_dead_labs)


def test_down_all_at_a_terminal_asks_and_no_means_no(two_dead_labs: list[Path]) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")
        answered = _down_all(stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert answered.returncode == 1
    assert "Go on? [y/N]" in answered.stdout
    assert "nothing was taken down" in answered.stderr
    assert all(d.exists() for d in two_dead_labs)


def test_down_all_says_in_its_help_that_it_takes_every_lab() -> None:
    help_text = " ".join(podlab("down", "--help").stdout.split())
    assert "take down every lab on this machine" in help_text
    assert "--yes" in help_text
