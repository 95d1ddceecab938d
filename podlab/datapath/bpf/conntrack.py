"""The programs' conntrack as Python sees it: timeouts, a listing, and garbage collection.

Entries carry an expiry on the programs' clock (bpf_ktime_get_ns, i.e. CLOCK_MONOTONIC);
the programs treat an expired entry as absent, so a reused 4-tuple picks a backend afresh
whether or not gc() has run. gc() only returns the space (the map is an LRU besides).
The policy conntrack (pol_conntrack) follows the same timeouts and is collected and
forgotten with it.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

from podlab.datapath.bpf.maps import Map, PerCpuArray, pinned_fd
from podlab.datapath.bpf.policy_schemas import PolCtValue
from podlab.datapath.bpf.schemas import (
    CT_CLOSING,
    CT_FORWARD,
    CT_HAIRPIN,
    PROTOCOL_NAMES,
    Counter,
    CtKey,
    CtValue,
    LbConfig,
    pack_ip,
    unpack_ip,
    unpack_port,
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds an idle entry lives, by state (the defaults are lb.h's)."""

    tcp_syn: int = 60
    tcp_established: int = 21600
    tcp_closing: int = 10
    udp: int = 60


@dataclass(frozen=True)
class Connection:
    """One translated connection, as `podlab bpf conntrack` shows it."""

    protocol: str
    client: str        # ip:port
    service: str       # VIP:port
    backend: str       # ip:port
    hairpin: bool
    closing: bool
    expires_in: float  # seconds; negative = expired, waiting for gc


def _endpoint(ip: int, port: int) -> str:
    return f"{unpack_ip(ip)}:{unpack_port(port)}"


class Conntrack:
    def __init__(self, pin_dir: Path | str) -> None:
        self.table = Map.pinned(pin_dir, "lb_conntrack", CtKey, CtValue)
        self.config = Map.pinned(pin_dir, "lb_config", ctypes.c_uint32, LbConfig)
        self.policy = Map.pinned(pin_dir, "pol_conntrack", CtKey, PolCtValue)

    def close(self) -> None:
        self.table.close()
        self.config.close()
        self.policy.close()

    def set_timeouts(self, t: Timeouts) -> None:
        self.config.put(ctypes.c_uint32(0), LbConfig(
            tcp_syn_s=t.tcp_syn, tcp_established_s=t.tcp_established,
            tcp_closing_s=t.tcp_closing, udp_s=t.udp))

    def connections(self) -> list[Connection]:
        now = time.monotonic_ns()
        return sorted(
            (Connection(PROTOCOL_NAMES.get(k.proto, str(k.proto)),
                        _endpoint(k.saddr, k.sport), _endpoint(k.daddr, k.dport),
                        _endpoint(v.addr, v.port), bool(v.flags & CT_HAIRPIN),
                        bool(v.flags & CT_CLOSING), (v.expires_ns - now) / 1e9)
             for k, v in self.table.items() if k.dir == CT_FORWARD),
            key=lambda c: (c.service, c.client))

    def gc(self) -> int:
        """Delete expired entries (both directions, and the policy's); returns how many."""
        now = time.monotonic_ns()
        removed = 0
        for table in (self.table, self.policy):
            for key, value in table.items():
                if value.expires_ns <= now and table.delete(key):
                    removed += 1
        return removed

    def forget(self, client_ip: str) -> int:
        """Delete the entries of every connection `client_ip` made (its pod is gone), and
        the policy's of every connection it had, so that a pod given the address later
        inherits no connection its policy did not admit; returns how many."""
        ip = pack_ip(client_ip)
        lb = sum(1 for key in list(self.table.keys())
                 if (key.saddr if key.dir == CT_FORWARD else key.daddr) == ip
                 and self.table.delete(key))
        return lb + sum(1 for key in list(self.policy.keys())
                        if ip in (key.saddr, key.daddr) and self.policy.delete(key))


def counters(pin_dir: Path | str) -> dict[str, int]:
    """The programs' counters (translations, drops by reason), summed over CPUs."""
    table = PerCpuArray("lb_counters", pinned_fd(pin_dir, "lb_counters"))
    try:
        return {c.name.lower(): table.sum(c) for c in Counter}
    finally:
        table.close()
