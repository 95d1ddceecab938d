"""Rules as trie keys: a port range becomes aligned blocks that cover it exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from podlab.datapath.bpf.policy import TrieEntry, compile_rules, trie_entries
from podlab.datapath.bpf.policy_model import Rule

TCP, UDP = 6, 17


def covered(entry: TrieEntry) -> range:
    """The ports a trie entry of a port rule matches."""
    free = 56 - entry.prefixlen
    return range(entry.port, entry.port + (1 << free))


@given(st.integers(1, 65535).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 65535))))
def test_a_range_is_covered_exactly_by_aligned_blocks(bounds: tuple[int, int]) -> None:
    first, last = bounds
    entries = list(trie_entries(Rule(300, TCP, first, last)))
    ports = [p for e in entries for p in covered(e)]
    assert sorted(ports) == list(range(first, last + 1))  # every port once, no other
    for e in entries:
        assert e.port % len(covered(e)) == 0  # aligned: the prefix says the block
    assert len(entries) <= 2 * 16  # at most two blocks per bit


def test_identity_only_and_protocol_only_rules_are_short_prefixes() -> None:
    assert list(trie_entries(Rule(300))) == [TrieEntry(32, 300, 0, 0)]
    assert list(trie_entries(Rule(300, UDP))) == [TrieEntry(40, 300, UDP, 0)]
    assert list(trie_entries(Rule(300, TCP, 80))) == [TrieEntry(56, 300, TCP, 80)]
    assert len(list(trie_entries(Rule(300, TCP, 1, 65535)))) == 16  # 1, 2-3, 4-7 ... 32768-


def test_overlapping_rules_compile_to_one_set() -> None:
    assert compile_rules(frozenset({Rule(300, TCP, 80), Rule(300, TCP, 80, 80)})) == {
        TrieEntry(56, 300, TCP, 80)}


def test_a_trie_key_round_trips_in_network_order() -> None:
    entry = TrieEntry(51, 0x01020304, TCP, 8064)
    key = entry.key()
    assert bytes(key)[4:] == bytes([1, 2, 3, 4, TCP, 8064 >> 8, 8064 & 0xFF])
    assert TrieEntry.of(key) == entry
