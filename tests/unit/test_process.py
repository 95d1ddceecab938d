"""A lab's owner is a pid plus its start time, so a reused pid is not mistaken for it."""

from __future__ import annotations

import subprocess
import sys

from podlab.lab.process import ProcessRef, owner_alive


def test_current_process_is_alive() -> None:
    assert owner_alive(ProcessRef.current())


def test_exited_process_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ref = ProcessRef(proc.pid, 0)
    proc.wait()
    assert not owner_alive(ref)


def test_same_pid_with_another_start_time_is_not_the_owner() -> None:
    me = ProcessRef.current()
    assert not owner_alive(ProcessRef(me.pid, me.start_ticks + 1))
