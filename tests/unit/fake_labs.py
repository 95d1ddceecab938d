"""Lab state files with no lab behind them, for CLI tests that need no root."""

from __future__ import annotations

from pathlib import Path

from podlab.lab.process import ProcessRef
from podlab.lab.state import LabState, NodeState


def fake_lab(run_dir: Path, name: str, nodes: int = 2) -> LabState:
    """A lab state under `run_dir` (set PODLAB_RUN_DIR to it), owned by this process."""
    state = LabState(name, ProcessRef.current(), "process", "netns", {}, status="up", nodes=[
        NodeState(f"n{i}", f"i-{i}", "ecs.g7.large", "z", "vsw-a", f"192.168.0.{i}",
                  "00:16:3e:00:00:01", f"podlab-{name}-node-n{i}", "192.168.0.253",
                  agent_socket=str(run_dir / name / f"n{i}.sock"))
        for i in range(1, nodes + 1)])
    (run_dir / name).mkdir(parents=True)
    state.save()
    return state
