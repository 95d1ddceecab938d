"""Helpers for end-to-end tests: they run as root and build real namespaces."""

from __future__ import annotations

import json
import subprocess

from podlab.lab import Lab


def ping(lab: Lab, source: str, ip: str, count: int = 1) -> bool:
    """One (or more) ICMP echo from a node or pod; True if answered."""
    proc = lab.exec(source, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", ip], check=False)
    return proc.returncode == 0


def ip_json(lab: Lab, target: str, *argv: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(lab.exec(target, ["ip", "-j", *argv]).stdout)
    return out


def host_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line}
