"""Build and run tools/libcni-driver: the real libcni (Debian's golang-github-appc-cni-dev,
GOPATH mode) driving a network list, as containerd and CRI-O do."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).parents[2] / "tools" / "libcni-driver"
GOPATH = "/usr/share/gocode"


def build(out_dir: Path) -> Path:
    binary = out_dir / "podlab-libcni"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH}
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=SOURCE, env=env, check=True,
                   capture_output=True)
    return binary


@dataclass(frozen=True)
class LibCni:
    binary: Path
    node_netns: str
    plugin_dirs: tuple[str, ...]
    cache_dir: Path

    def __call__(self, command: str, conflist: Path, netns: str, container_id: str,
                 args: str = "") -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.node_netns, str(self.binary), command,
                "-conflist", str(conflist), "-netns", netns, "-container-id", container_id,
                "-cache-dir", str(self.cache_dir), "-args", args]
        for d in self.plugin_dirs:
            argv += ["-plugin-dir", d]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)

    def add(self, conflist: Path, netns: str, container_id: str) -> dict[str, Any]:
        proc = self("ADD", conflist, netns, container_id)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result
