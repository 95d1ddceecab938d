"""What this machine can do, probed once and reported by name.

A test that needs a capability skips with its name, or fails under strict mode (CI), so
a missing kernel feature is never mistaken for a pass.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import shutil
import subprocess
from collections.abc import Callable

from podlab.datapath.bpf import bpffs
from podlab.lab import vm

# Link kinds probed by creating one inside a throwaway `unshare -n`, which leaves nothing.
_VETH = "ip link add name pa type veth peer name pb"
_LINK_PROBES = {
    "veth": _VETH,
    "ipvlan": f"{_VETH} && ip link add name pi link pa type ipvlan mode l2",
    "macvlan": f"{_VETH} && ip link add name pm link pa type macvlan",
    "bridge": "ip link add name pbr type bridge",
    "vxlan": "ip link add name pvx type vxlan id 42 dstport 4789 local 127.0.0.1",
    "tc-clsact": f"{_VETH} && tc qdisc add dev pa clsact",
}


def _root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (network namespaces, netlink)"


def _netns() -> str | None:
    return _root() or (None if shutil.which("ip") else "iproute2 'ip' is not installed")


def _link_probe(kind: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        if missing := _netns():
            return missing
        proc = subprocess.run(["unshare", "--net", "sh", "-c", _LINK_PROBES[kind]],
                              capture_output=True, text=True, check=False)
        return None if proc.returncode == 0 else f"kernel has no {kind}: {proc.stderr.strip()}"
    return probe


def _bpf() -> str | None:
    """What the eBPF datapath needs to build and load its programs and attach them to tc."""
    if missing := _link_probe("tc-clsact")():
        return missing
    if not shutil.which("clang"):
        return "clang is not installed (it compiles the eBPF programs)"
    if ctypes.util.find_library("bpf") is None:
        return "libbpf (Debian's libbpf1) is not installed"
    return None


def _bpffs() -> str | None:
    if missing := _root():
        return missing
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t bpf bpf /mnt"],
                          capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else f"cannot mount bpffs: {proc.stderr.strip()}"


def _cgroup2_bpf() -> str | None:
    """cgroup v2 mounted, for the socket-LB hooks (connect4/sendmsg4/recvmsg4)."""
    if missing := _root():
        return missing
    return None if bpffs.cgroup2_root() else "no cgroup v2 hierarchy is mounted"


def _command(name: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(name) else f"{name} is not installed"


PROBES: dict[str, Callable[[], str | None]] = {
    "root": _root,
    "netns": _netns,
    **{kind: _link_probe(kind) for kind in _LINK_PROBES},
    "iptables": _command("iptables"),
    "nftables": _command("nft"),
    "tcpdump": _command("tcpdump"),
    "ethtool": _command("ethtool"),
    "clang": _command("clang"),
    "bpftool": _command("bpftool"),
    "bpf": _bpf,
    "bpffs": _bpffs,
    "cgroup2-bpf": _cgroup2_bpf,
    "vm": vm.missing,
}


@functools.cache
def missing(name: str) -> str | None:
    """None if the machine has capability `name`, else why not."""
    try:
        probe = PROBES[name]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}; known: {sorted(PROBES)}") from None
    return probe()


def report() -> dict[str, str | None]:
    return {name: missing(name) for name in PROBES}
