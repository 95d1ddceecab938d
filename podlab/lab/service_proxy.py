"""Which Service proxy a lab runs: the agents' eBPF programs where the kernel allows them,
else kube-proxy's iptables rules; kube-proxy's iptables and nftables modes stay on demand,
as the baseline the eBPF datapath is measured against."""

from __future__ import annotations

from podlab.lab.errors import LabError

SERVICE_PROXIES = ("ebpf", "iptables", "nftables")
EBPF_NEEDS = ("bpf", "bpffs", "tc-clsact", "cgroup2-bpf")  # capabilities.PROBES' names
FALLBACK = "iptables"


def resolve(wanted: str | None) -> tuple[str, str | None]:
    """The proxy for `wanted` (None: the default), and a note when the default fell back.
    Asking for ebpf on a kernel without it is an error naming what is missing."""
    if wanted is not None and wanted not in SERVICE_PROXIES:
        raise LabError(f"service proxy {wanted!r}: one of {', '.join(SERVICE_PROXIES)}")
    if wanted not in (None, "ebpf"):
        return wanted, None
    from podlab.lab import capabilities  # its probes import ctypes' libc: not for `--help`

    lacking = "; ".join(f"{name}: {why}" for name in EBPF_NEEDS
                        if (why := capabilities.missing(name)))
    if not lacking:
        return "ebpf", None
    if wanted == "ebpf":
        raise LabError(f"service proxy ebpf: this machine lacks {lacking}")
    return FALLBACK, f"Services by kube-proxy ({FALLBACK}): no eBPF here ({lacking})"
