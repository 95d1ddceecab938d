"""`make demo` stays true: the showcase runs end to end and leaves the host as it was."""

from __future__ import annotations

import pytest

from tests.e2e.test_cleanup import podlab

pytestmark = pytest.mark.root


def test_the_demo_runs_and_cleans_up() -> None:
    demo = podlab("demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "0% packet loss" in demo.stdout
    assert "appeared in n1 as eth1" in demo.stdout
    assert "n2 reaches" in demo.stdout
    assert "The host is as it was" in demo.stdout
