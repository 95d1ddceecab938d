"""The ipvlan datapath end to end in the VM (Debian's 6.1 kernel has ipvlan; this host's
does not): one boot runs every case of vm_ipvlan_cases.py, strictly, so a skip is a failure."""

from __future__ import annotations

import compileall
import re
import shlex
import sys
from pathlib import Path

import pytest

from podlab.lab.vm import run_in_vm

pytestmark = [pytest.mark.root, pytest.mark.kernel("vm")]

REPO = Path(__file__).resolve().parents[3]
CASES = Path(__file__).with_name("vm_ipvlan_cases.py").relative_to(REPO)


@pytest.mark.timeout(1500)
def test_ipvlan_datapath_in_the_vm() -> None:
    # Every import crosses 9p into an emulated CPU: load no more than these cases need, and
    # compile them here, because the guest sees this tree read-only and would recompile
    # every module in every process. Without KVM, on a machine busy with the rest of the
    # suite, this takes 5 to 8 minutes, most of it two agents importing the cloud SDKs
    # (2,300 modules, 140 s each in the guest against 1.4 s here), then the upstream
    # NetworkPolicy cases (about 130 s, mostly the timeouts of denied probes). The guest's
    # per-test limit is therefore the whole run's, not the host's 300 s.
    for tree in ("podlab", "tests"):
        compileall.compile_dir(REPO / tree, quiet=1)
    pytest_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-p", "no:xdist", "-p", "no:hypothesispytest", "-o", "timeout=1200",
                   "--durations=0", f"--confcutdir={CASES.parent}", str(CASES)]
    result = run_in_vm(
        f"modprobe ipvlan && modprobe veth && cd {shlex.quote(str(REPO))} && "
        f"PYTHONDONTWRITEBYTECODE=1 PODLAB_STRICT=1 PODLAB_AGENT_READY_TIMEOUT=600 "
        f"{shlex.join(pytest_argv)}",
        timeout=1380,
    )
    assert result.returncode == 0, result.output[-6000:]
    assert re.fullmatch(r"\d+ passed in .*", result.output.strip().splitlines()[-1]), (
        result.output[-6000:])
