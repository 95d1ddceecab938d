"""`podlab-agent gc` with no pod named would release every address on the node: the same
trap as a CNI GC without its list, so it is refused unless said on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlab.cni.cli import main


def test_gc_with_no_live_pods_named_is_refused_before_asking(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc", "--socket", str(tmp_path / "none.sock")]) == 2
    assert "--no-live-pods" in capsys.readouterr().err


def test_gc_with_no_live_pods_on_purpose_asks_the_agent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc", "--no-live-pods", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "--no-live-pods" not in capsys.readouterr().err  # the agent was asked: none runs
