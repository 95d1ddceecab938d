"""Helpers for end-to-end tests: they run as root and build real namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from podlab.lab import Lab

T = TypeVar("T")


def ping(lab: Lab, source: str, ip: str, count: int = 1) -> bool:
    """One (or more) ICMP echo from a node or pod; True if answered."""
    proc = lab.exec(source, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", ip], check=False)
    return proc.returncode == 0


def ip_json(lab: Lab, target: str, *argv: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(lab.exec(target, ["ip", "-j", *argv]).stdout)
    return out


def host_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line}


def cni(lab: Lab, command: str, pod: str, node: str, *, container: str = "c1",
        version: str = "1.1.0") -> tuple[int, dict[str, Any]]:
    """Run the node's podlab-cni for a lab pod as a runtime would: exit code, stdout JSON."""
    namespace, name = pod.split("/")
    conf = {"cniVersion": version, "name": "podlab", "type": "podlab-cni",
            "agent_socket": lab.state.node(node).agent_socket}
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": f"/run/netns/{lab.state.pod(namespace, name).netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": lab.state.node(node).cni_bin_dir,
           "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"}
    plugin = Path(lab.state.node(node).cni_bin_dir) / "podlab-cni"
    proc = subprocess.run([plugin], input=json.dumps(conf), env=env, capture_output=True,
                          text=True, check=False, timeout=60)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def podlab(*argv: str) -> subprocess.CompletedProcess[str]:
    """The podlab CLI, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "podlab", *argv], capture_output=True,
                          text=True, check=False, timeout=120)


def eventually(check: Callable[[], T | None], timeout: float = 90.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)
