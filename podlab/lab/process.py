"""Process identity that survives pid reuse: a pid plus its start time."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_ticks: int

    @classmethod
    def current(cls) -> ProcessRef:
        return cls(os.getpid(), start_ticks(os.getpid()) or 0)


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields follow the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def owner_alive(ref: ProcessRef) -> bool:
    return start_ticks(ref.pid) == ref.start_ticks


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until `pid` has exited (or is a zombie); True if it did within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if start_ticks(pid) is None:
            return True
        time.sleep(0.02)
    return start_ticks(pid) is None


def started_at(ref: ProcessRef) -> datetime:
    """When `ref` started, from its start ticks and the boot time (btime in /proc/stat)."""
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return datetime.fromtimestamp(boot + ref.start_ticks / os.sysconf("SC_CLK_TCK"), UTC)
