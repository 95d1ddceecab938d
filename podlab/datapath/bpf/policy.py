"""A PolicyState as map entries: identities, CIDR identities, and each local pod's rules.

Each (pod, direction) with policy is one LPM trie of allow entries, found by the pod's
address in pol_ingress_map / pol_egress_map. A change builds a new trie and swaps it in with
one update of the outer entry, so a packet meets a pod's old rules or its new ones, never
half of each; the old trie is freed by the kernel once no program holds it.

The maps are the state: PolicyMaps reads them back on open (a restarted agent adopts
what its predecessor wrote) and then writes only the difference.
"""

from __future__ import annotations

import ctypes
import functools
import socket
from collections.abc import Callable, Iterator, Mapping
from ctypes import c_uint8, c_uint32
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, NamedTuple

from podlab.datapath.bpf import libbpf
from podlab.datapath.bpf.libbpf import BpfError
from podlab.datapath.bpf.maps import Map, MapFull, PerCpuArray, pinned_fd
from podlab.datapath.bpf.policy_model import ANY_PROTOCOL, PolicyState, Rule
from podlab.datapath.bpf.policy_schemas import (
    POL_EGRESS,
    POL_EGRESS_RULES,
    POL_INGRESS,
    POL_INGRESS_RULES,
    RULE_KEY_BITS,
    CidrKey,
    PolConfig,
    PolCounter,
    Reason,
    RuleKey,
)
from podlab.datapath.bpf.schemas import pack_ip, pack_port, unpack_ip, unpack_port

DIRECTIONS = {POL_INGRESS: ("pol_ingress_map", POL_INGRESS_RULES),
              POL_EGRESS: ("pol_egress_map", POL_EGRESS_RULES)}
PORT_BITS = 16
PROTO_BITS = 8


class TrieEntry(NamedTuple):
    """One key of a pod's rule trie, host order: `prefixlen` bits of (identity, protocol,
    port) must match."""

    prefixlen: int
    identity: int
    protocol: int
    port: int

    def key(self) -> RuleKey:
        return RuleKey(prefixlen=self.prefixlen, identity=socket.htonl(self.identity),
                       proto=self.protocol, port=pack_port(self.port))

    @classmethod
    def of(cls, key: RuleKey) -> TrieEntry:
        return cls(key.prefixlen, socket.ntohl(key.identity), key.proto, unpack_port(key.port))


def _port_blocks(first: int, last: int) -> Iterator[tuple[int, int]]:
    """[first, last] as aligned blocks (start, bits fixed), fewest first to last."""
    while first <= last:
        size = first & -first if first else 1 << PORT_BITS
        while size > last - first + 1:
            size //= 2
        yield first, PORT_BITS - (size.bit_length() - 1)
        first += size


def trie_entries(rule: Rule) -> Iterator[TrieEntry]:
    """A rule as trie keys: identity alone, + protocol, or + each block of its port range."""
    identity_bits = RULE_KEY_BITS - PORT_BITS - PROTO_BITS
    if rule.protocol == ANY_PROTOCOL:
        yield TrieEntry(identity_bits, rule.identity, 0, 0)
    elif rule.port == 0:
        yield TrieEntry(identity_bits + PROTO_BITS, rule.identity, rule.protocol, 0)
    else:
        for start, bits in _port_blocks(rule.port, rule.end_port or rule.port):
            yield TrieEntry(identity_bits + PROTO_BITS + bits, rule.identity, rule.protocol,
                            start)


@functools.lru_cache(maxsize=4096)
def compile_rules(rules: frozenset[Rule]) -> frozenset[TrieEntry]:
    """Cached: a sync compiles every pod's rules, and most are what they were."""
    return frozenset(e for rule in rules for e in trie_entries(rule))


@dataclass
class PolicyStats:
    """What a sync wrote: the agent's metrics."""

    written: int = 0    # ipcache, cidr and flag entries added or changed
    removed: int = 0    # entries deleted, pods' directions no longer isolated included
    swapped: int = 0    # pods' directions whose rule trie was replaced (or first isolated)
    unchanged: int = 0  # pods' directions whose rules were already there
    entries: dict[str, int] = field(default_factory=dict)  # map -> entries after the sync


Direction = tuple[str, int]  # (pod address, POL_INGRESS | POL_EGRESS)


def _ip_key(ip: str) -> c_uint32:
    return c_uint32(pack_ip(ip))


def _cidr_key(prefix: str) -> CidrKey:
    net = IPv4Network(prefix)
    return CidrKey(prefixlen=net.prefixlen, addr=pack_ip(net.network_address))


class PolicyMaps:
    """One node's policy maps and what they hold: `pods`, `cidrs`, `flags`, `rules`."""

    def __init__(self, pin_dir: Path | str) -> None:
        self.ipcache = Map.pinned(pin_dir, "pol_ipcache", c_uint32, c_uint32)
        self.cidr_map = Map.pinned(pin_dir, "pol_cidrs", CidrKey, c_uint32)
        self.flag_map = Map.pinned(pin_dir, "pol_flags", c_uint32, c_uint32)
        self.outer = {d: Map.pinned(pin_dir, name, c_uint32, c_uint32)
                      for d, (name, _) in DIRECTIONS.items()}
        self.pods: dict[str, int] = {unpack_ip(k.value): v.value for k, v in self.ipcache.items()}
        self.cidrs: dict[str, int] = {
            f"{unpack_ip(k.addr)}/{k.prefixlen}": v.value for k, v in self.cidr_map.items()}
        self.flags: dict[str, int] = {unpack_ip(k.value): v.value
                                      for k, v in self.flag_map.items()}
        self.rules = self._read_rules()

    def close(self) -> None:
        for m in self._maps():
            m.close()

    def _maps(self) -> list[Map[Any, Any]]:
        return [self.ipcache, self.cidr_map, self.flag_map, *self.outer.values()]

    def _read_rules(self) -> dict[Direction, frozenset[TrieEntry]]:
        return {(unpack_ip(k.value), d): _read_trie(v.value)
                for d, outer in self.outer.items() for k, v in outer.items()}

    # ---- writing ----

    def sync(self, state: PolicyState) -> PolicyStats:
        """Make the maps hold exactly `state`, writing only what changed. A sync that would
        not fit is refused (MapFull) before anything is written."""
        pods = dict(state.pods)
        cidrs = {str(IPv4Network(p)): identity for p, identity in state.cidrs.items()}
        rules: dict[Direction, frozenset[TrieEntry]] = {}
        flags: dict[str, int] = {}
        for ep in state.endpoints.values():
            for d, given in ((POL_INGRESS, ep.ingress), (POL_EGRESS, ep.egress)):
                if given is not None:
                    rules[(ep.ip, d)] = compile_rules(given)
                    if given:
                        flags[ep.ip] = flags.get(ep.ip, 0) | DIRECTIONS[d][1]
        self._check_capacity(pods, cidrs, rules, flags)
        stats = PolicyStats()
        # Removals first, so that a map never holds more than the larger of before/after.
        self._apply(self.pods, pods, self.ipcache, _ip_key, stats)
        self._apply(self.cidrs, cidrs, self.cidr_map, _cidr_key, stats)
        self._apply(self.flags, flags, self.flag_map, _ip_key, stats)
        for d, outer in self.outer.items():
            gone = [ip for ip, dd in self.rules if dd == d and (ip, dd) not in rules]
            outer.delete_batch([_ip_key(ip) for ip in gone])
            for ip in gone:
                del self.rules[(ip, d)]
            changed = {ip: entries for (ip, dd), entries in rules.items()
                       if dd == d and self.rules.get((ip, dd)) != entries}
            self._swap(d, changed)
            stats.removed += len(gone)
            stats.swapped += len(changed)
        stats.unchanged = len(rules) - stats.swapped
        stats.entries = {"pol_ipcache": len(self.pods), "pol_cidrs": len(self.cidrs),
                         "pol_flags": len(self.flags),
                         **{DIRECTIONS[d][0]: sum(1 for _, dd in self.rules if dd == d)
                            for d in DIRECTIONS}}
        return stats

    def _check_capacity(self, pods: Mapping[str, int], cidrs: Mapping[str, int],
                        rules: Mapping[Direction, object], flags: Mapping[str, int]) -> None:
        needs = [len(pods), len(cidrs), len(flags),
                 *(sum(1 for _, dd in rules if dd == d) for d in self.outer)]
        for m, needed in zip(self._maps(), needs, strict=True):
            if needed > m.capacity:
                raise MapFull(m.name, m.capacity, needed)

    @staticmethod
    def _apply(held: dict[str, int], wanted: Mapping[str, int], m: Map[Any, c_uint32],
               key: Callable[[str], Any], stats: PolicyStats) -> None:
        """Make `m` (mirrored by `held`) hold `wanted`: deletions, then writes."""
        for name in [n for n in held if n not in wanted]:
            m.delete(key(name))
            del held[name]
            stats.removed += 1
        for name, number in wanted.items():
            if held.get(name) != number:
                m.put(key(name), c_uint32(number))
                held[name] = number
                stats.written += 1

    def _swap(self, direction: int, changed: Mapping[str, frozenset[TrieEntry]]) -> None:
        """New tries for the pods in `changed`, then one batch update of the outer map:
        each pod's entry flips in one update, and the kernel waits for running programs
        once per batch, not once per pod."""
        tries: list[Map[RuleKey, c_uint8]] = []
        try:
            for entries in changed.values():
                tries.append(_trie(entries))
            try:
                self.outer[direction].put_batch([_ip_key(ip) for ip in changed],
                                                [c_uint32(t.fd) for t in tries])
            except BpfError:
                self.rules = self._read_rules()  # some of the batch may have been written
                raise
        finally:
            for trie in tries:
                trie.close()  # the outer map holds them now, or nothing does
        self.rules.update({(ip, direction): entries for ip, entries in changed.items()})


def _trie(entries: frozenset[TrieEntry]) -> Map[RuleKey, c_uint8]:
    """A new rule trie holding `entries`, sized to them."""
    opts = libbpf.MapCreateOpts(sz=ctypes.sizeof(libbpf.MapCreateOpts),
                                map_flags=libbpf.BPF_F_NO_PREALLOC)
    fd = libbpf.check("create a rule trie", libbpf.lib().bpf_map_create(
        libbpf.BPF_MAP_TYPE_LPM_TRIE, b"pol_rules", ctypes.sizeof(RuleKey),
        ctypes.sizeof(c_uint8), max(len(entries), 1), ctypes.byref(opts)))
    trie: Map[RuleKey, c_uint8] = Map("pol_rules", fd, RuleKey, c_uint8)
    try:
        for entry in sorted(entries):
            trie.put(entry.key(), c_uint8(1))
    except BaseException:
        trie.close()
        raise
    return trie


def _read_trie(map_id: int) -> frozenset[TrieEntry]:
    trie: Map[RuleKey, c_uint8] = Map("pol_rules", libbpf.check(
        f"map id {map_id}", libbpf.lib().bpf_map_get_fd_by_id(map_id)), RuleKey, c_uint8)
    try:
        return frozenset(map(TrieEntry.of, trie.keys()))
    finally:
        trie.close()


def set_allow_sampling(pin_dir: Path | str, every: int) -> None:
    """Report one allowed new connection in `every` (at random) as a flow; 0 = none."""
    if not 0 <= every < 2**32:
        raise ValueError(f"allow sampling: 1 in {every}?")
    config = Map.pinned(pin_dir, "pol_config", c_uint32, PolConfig)
    try:
        config.put(c_uint32(0), PolConfig(allow_every=every))
    finally:
        config.close()


def policy_counters(pin_dir: Path | str) -> dict[str, int]:
    """Per reason (Reason's names, lower case: packets dropped, new connections allowed,
    packets of established connections), plus ct_full and events_lost; over all CPUs."""
    table = PerCpuArray("pol_counters", pinned_fd(pin_dir, "pol_counters"))
    try:
        return {c.name.lower(): table.sum(c) for c in (*Reason, *PolCounter)}
    finally:
        table.close()
