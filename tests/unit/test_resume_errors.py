"""`podlab up --resume` refuses what it cannot bring back, in one line that says what to
run instead, before it starts a supervisor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from podlab.lab.process import ProcessRef
from tests.unit.fake_labs import fake_lab
from tests.unit.test_cli_errors import podlab, run_dir

__all__ = ["run_dir"]  # the fixture


@pytest.mark.parametrize(("status", "says", "then"), [
    ("", "no lab 'x' to resume", "podlab up --name x"),
    ("live", "lab 'x' runs (owner pid", "podlab status --name x"),
    ("starting", "died before it was up", "podlab clean --name x"),
    ("garbled", "its state is unreadable", "podlab clean --name x"),
])
def test_what_cannot_be_resumed_is_refused(run_dir: Path, status: str, says: str,
                                           then: str) -> None:
    if status:
        state = fake_lab(run_dir, "x")
        if status != "live":
            state.owner = dataclasses.replace(ProcessRef.current(), start_ticks=1)  # dead
            state.status = status
            state.save()
        if status == "garbled":
            (run_dir / "x" / "state.json").write_text("{")
    proc = podlab("up", "--resume", "x")
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert says in line
    assert f"`.venv/bin/{then}" in line
