"""Start-up of `podlab --help` and `podlab status --json` against a bare `python -c pass`,
all measured in the same run, interleaved: the median of each and its ratio to the bare
interpreter. Goal: within 5 times. Prints figures; asserts no time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.fake_labs import fake_lab

RUNS = 15
PODLAB = str(Path(sys.executable).parent / "podlab")  # the console script a user runs


def _seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def test_cli_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    fake_lab(tmp_path, "bench")
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "podlab --help": [PODLAB, "--help"],
                "podlab status --json": [PODLAB, "status", "--name", "bench", "--json"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, argv in commands.items():
            times[name].append(_seconds(argv))
    bare = statistics.median(times["python -c pass"])
    print()
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<22} median {median * 1000:6.1f} ms  {median / bare:4.1f}x bare python")
