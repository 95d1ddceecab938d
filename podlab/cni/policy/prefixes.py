"""An ipBlock as CIDR identities. The datapath finds an address's longest trie prefix, so
a block allows exactly `cidr` minus its excepts when its rule names every trie prefix
inside `cidr` and inside none of the excepts: the longest prefix holding an address lies
inside `cidr` (an except) exactly when the address does, as both are in the trie."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

from podlab.cni.policy.objects import Block

Network = ipaddress.IPv4Network


class PrefixSet:
    """The trie's prefixes, sorted by (network address, length), so the prefixes inside
    one are a contiguous run."""

    def __init__(self, prefixes: Iterable[Network]) -> None:
        self._sorted = sorted({(int(p.network_address), p.prefixlen) for p in prefixes})
        self._answers: dict[Block, frozenset[Network]] = {}

    def _inside(self, outer: Network) -> list[tuple[int, int]]:
        low, high = int(outer.network_address), int(outer.broadcast_address)
        start = bisect.bisect_left(self._sorted, (low, outer.prefixlen))
        stop = bisect.bisect_right(self._sorted, (high, 32))
        return [p for p in self._sorted[start:stop] if p[1] >= outer.prefixlen]

    def allowed_by(self, block: Block) -> frozenset[Network]:
        """The prefixes whose CIDR identities a rule with `block` allows."""
        answer = self._answers.get(block)
        if answer is None:
            excluded = {p for e in block.excepts for p in self._inside(e)}
            answer = self._answers[block] = frozenset(
                ipaddress.IPv4Network(p) for p in self._inside(block.cidr) if p not in excluded)
        return answer

