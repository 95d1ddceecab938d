"""The VM path that ipvlan tests take: Debian's 6.1 kernel under virtme-ng, with ipvlan."""

from __future__ import annotations

import pytest

from podlab.lab.vm import run_in_vm

pytestmark = [pytest.mark.root, pytest.mark.kernel("vm")]


def test_vm_kernel_has_ipvlan() -> None:
    result = run_in_vm(
        "uname -r; modprobe ipvlan && modprobe veth && "
        "ip link add name pa type veth peer name pb && "
        "ip link add name pi link pa type ipvlan mode l2 && ip -d -o link show pi"
    )
    assert result.returncode == 0, result.output
    release, link = result.output.strip().splitlines()[-2:]
    assert release.startswith("6.1.")
    assert "ipvlan  mode l2" in link


def test_vm_reports_a_failing_script() -> None:
    result = run_in_vm("echo about to fail; exit 3")
    assert (result.returncode, result.output.strip()) == (3, "about to fail")
