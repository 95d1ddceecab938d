"""A lab's Service proxy: eBPF by default where the kernel allows it, else kube-proxy's
iptables, said so; asked for by name, a missing capability is an error that names it."""

from __future__ import annotations

import pytest

from podlab.lab import capabilities
from podlab.lab.errors import LabError
from podlab.lab.service_proxy import resolve


def lacking(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setattr(capabilities, "missing",
                        lambda name: f"no {name} here" if name in names else None)


def test_ebpf_is_the_default_where_the_kernel_allows_it(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    lacking(monkeypatch)
    assert resolve(None) == ("ebpf", None)
    assert resolve("nftables") == ("nftables", None)


def test_without_ebpf_the_default_falls_back_to_iptables_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lacking(monkeypatch, "cgroup2-bpf")
    proxy, note = resolve(None)
    assert proxy == "iptables"
    assert note is not None
    assert "cgroup2-bpf: no cgroup2-bpf here" in note
    with pytest.raises(LabError, match="lacks cgroup2-bpf"):
        resolve("ebpf")


def test_an_unknown_proxy_is_refused() -> None:
    with pytest.raises(LabError, match="one of ebpf, iptables, nftables"):
        resolve("ipvs")
