"""Keeping a node's Service rules in sync, in the node's own netns, by either mode."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from podlab.datapath.kubeproxy import iptables, nftables
from podlab.datapath.kubeproxy.model import ServicePort

MODES = ("iptables", "nftables")


class ProxyError(RuntimeError):
    """A rules update was refused by the kernel; carries the command's output."""


class KubeProxy:
    """kube-proxy for one node. `netns` None means the netns this process runs in."""

    def __init__(self, mode: str, netns: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"kube-proxy mode {mode!r}: one of {MODES}")
        self.mode = mode
        self.netns = netns

    def _run(self, argv: Sequence[str], stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        full = ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)
        proc = subprocess.run(full, input=stdin, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise ProxyError(f"{' '.join(full)} failed: {proc.stderr.strip()}")
        return proc

    def sync(self, services: Sequence[ServicePort]) -> None:
        """Make the node's rules exactly what `services` say."""
        if self.mode == "nftables":
            self._run(["nft", "-f", "-"], nftables.ruleset(services))
            return
        saved = self._run(["iptables-save", "-t", "nat"]).stdout
        stale = [line[1:].split()[0] for line in saved.splitlines()
                 if line.startswith((":KUBE-SVC-", ":KUBE-SEP-"))]
        self._run(["iptables-restore", "--noflush"], iptables.restore_input(services, stale))
        for table, chain, target in iptables.HOOKS:
            rule = [chain, "-m", "comment", "--comment", iptables.HOOK_COMMENT, "-j", target]
            if self._run(["iptables", "-t", table, "-C", *rule], check=False).returncode:
                self._run(["iptables", "-t", table, "-I", *rule])
