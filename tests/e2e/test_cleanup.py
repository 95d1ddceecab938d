"""A lab always goes away whole, on error and on its owner's crash, and takes nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from podlab.lab import Lab, LabError
from podlab.lab.ownership import leftovers, record_netns, remove_lab
from podlab.lab.process import wait_gone
from podlab.lab.pytest_plugin import unique_lab_name
from podlab.lab.state import run_dir
from tests.e2e.helpers import host_netns, podlab

pytestmark = pytest.mark.root


def test_a_body_that_raises_leaves_nothing() -> None:
    name = unique_lab_name()

    def body() -> None:
        with Lab(name=name) as lab:
            lab.add_pod("default", "p1", "n2")
            assert leftovers(name)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert leftovers(name) == []


def test_a_failure_half_way_up_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique_lab_name()
    lab = Lab(name=name)
    create = lab.backend.create_node

    def fail_on_n2(lab_name: str, node: str) -> str:
        if node == "n2":
            raise LabError("node n2 refused to start")
        return create(lab_name, node)

    monkeypatch.setattr(lab.backend, "create_node", fail_on_n2)
    with pytest.raises(LabError, match="n2 refused"):
        lab.up()
    assert leftovers(name) == []


def test_a_second_lab_of_the_same_name_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="already runs"):
        Lab(name=lab.name).up()
    assert lab.state.node("n1").netns in host_netns()


def test_clean_removes_a_killed_lab_and_only_that(lab: Lab) -> None:
    name = unique_lab_name()
    up = podlab("up", "--name", name)
    assert up.returncode == 0, up.stderr
    supervisor = json.loads(podlab("status", "--name", name, "--json").stdout)["owner_pid"]
    foreign_ns = f"podlab-{name}-node-foreign"  # looks like ours, carries no label
    foreign_link = f"plf{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", foreign_ns], check=True)
    subprocess.run(["ip", "link", "add", "name", foreign_link, "type", "veth", "peer", "name",
                    foreign_link + "p"], check=True)
    try:
        os.kill(supervisor, signal.SIGKILL)
        assert wait_gone(supervisor, timeout=10)
        assert any(item.startswith("netns") for item in leftovers(name))

        # Every dead lab on the machine would go, but no live one (`lab` stays)...
        dry = podlab("clean", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"lab {name}: owner pid {supervisor} " in dry.stdout
        assert f"lab {lab.name}:" not in dry.stdout
        # ...and this one goes, by its labels: the unlabelled look-alikes stay.
        clean = podlab("clean", "--name", name)
        assert clean.returncode == 0, clean.stderr
        assert f"netns podlab-{name}-vpc" in clean.stdout
        assert leftovers(name) == []
        assert foreign_ns in host_netns()
        assert subprocess.run(["ip", "link", "show", foreign_link], check=False,
                              capture_output=True).returncode == 0
        assert lab.state.node("n1").netns in host_netns()
        assert leftovers(lab.name)
    finally:
        subprocess.run(["ip", "netns", "del", foreign_ns], check=False)
        subprocess.run(["ip", "link", "del", foreign_link], check=False)


def test_a_netns_killed_before_its_label_is_still_the_labs() -> None:
    """A kill between `ip netns add` and the label leaves an unlabelled netns: the lab's
    record of what it was creating names it, so clean removes it; one it never recorded,
    named just like it, is not the lab's and stays."""
    name = unique_lab_name()
    (run_dir() / name).mkdir(parents=True)
    recorded, foreign = f"podlab-{name}-node-n1", f"podlab-{name}-node-n2"
    record_netns(name, recorded)
    try:
        for ns in (recorded, foreign):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        assert leftovers(name) == [f"netns {recorded}", f"dir {run_dir() / name}"]
        remove_lab(name)
        assert recorded not in host_netns()
        assert foreign in host_netns()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
        remove_lab(name)
