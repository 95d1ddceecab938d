"""PolicyMaps: writes only what changed, adopts what the pins hold, refuses what would not
fit, swaps a pod's rules atomically; and CHECK sees every policy filter."""

from __future__ import annotations

import threading
import time

import pytest

from podlab.datapath.bpf import MapFull, PolicyMaps, policy_counters
from podlab.datapath.bpf.policy import TrieEntry
from podlab.datapath.bpf.policy_model import FIRST_CIDR_IDENTITY, Endpoint, PolicyState, Rule
from tests.e2e.bpf.conftest import PolicySetup
from tests.e2e.bpf.test_policy import DENY, TCP, UDP, ns, tcp_reaches
from tests.e2e.bpf.world import World, tcp_hello

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool")]


def test_a_sync_writes_only_what_changed(pol: PolicySetup) -> None:
    a_id = pol.identity("a")
    ingress = {"b": frozenset({Rule(a_id, TCP, 8080)}), "c": DENY}
    first = pol.sync(ingress=ingress)
    assert (first.swapped, first.unchanged) == (2, 0)
    again = pol.sync(ingress=ingress)
    assert (again.written, again.removed, again.swapped, again.unchanged) == (0, 0, 0, 2)
    one = pol.sync(ingress={**ingress, "b": frozenset({Rule(a_id, UDP)})})
    assert (one.written, one.removed, one.swapped, one.unchanged) == (0, 0, 1, 1)
    assert pol.maps.rules[(pol.ip("b"), 0)] == {TrieEntry(40, a_id, UDP, 0)}
    gone = pol.sync(ingress={"b": frozenset({Rule(a_id, UDP)})})
    assert (gone.removed, gone.swapped, gone.unchanged) == (1, 0, 1)
    assert gone.entries["pol_ingress_map"] == 1
    assert tcp_reaches(ns(pol, "a"), pol.ip("c"))  # no longer isolated


def test_a_new_policy_maps_adopts_what_the_pins_hold(pol: PolicySetup) -> None:
    cidrs = {"10.77.0.0/16": FIRST_CIDR_IDENTITY}
    ingress = {"b": frozenset({Rule(pol.identity("a"), TCP, 8000, 8100)})}
    egress = {"c": DENY}
    pol.sync(ingress=ingress, egress=egress, cidrs=cidrs)
    adopter = PolicyMaps(pol.world.pin_dir)
    pol.world.cleanups.append(adopter.close)
    assert (adopter.pods, adopter.cidrs, adopter.rules, adopter.flags) == (
        pol.maps.pods, pol.maps.cidrs, pol.maps.rules, pol.maps.flags)
    stats = adopter.sync(pol.state(ingress=ingress, egress=egress, cidrs=cidrs))
    assert (stats.written, stats.removed, stats.swapped, stats.unchanged) == (0, 0, 0, 2)
    assert tcp_reaches(ns(pol, "a"), pol.ip("b"))
    assert not tcp_reaches(ns(pol, "c"), pol.ip("b"))


def test_a_sync_that_would_overflow_is_refused_and_writes_nothing(world: World) -> None:
    for name in ("a", "b", "c"):
        world.add_pod(name)
    pin_dir = world.bpffs / "small"
    world.programs(pin_dir, capacities={"pol_ipcache": 3})
    maps = PolicyMaps(pin_dir)
    world.cleanups.append(maps.close)
    ips = [p.ip for p in world.pods.values()]
    fits = {ip: 256 + i for i, ip in enumerate(ips)}
    maps.sync(_state(fits, isolated=ips[1]))
    with pytest.raises(MapFull) as refused:  # a changed, one pod more, c isolated
        maps.sync(_state({**fits, ips[0]: 999, "10.77.9.9": 300}, isolated=ips[2]))
    assert (refused.value.map_name, refused.value.capacity, refused.value.needed) == (
        "pol_ipcache", 3, 4)
    held = PolicyMaps(pin_dir)
    world.cleanups.append(held.close)
    assert (held.pods, set(held.rules)) == (fits, {(ips[1], 0)})


def _state(pods: dict[str, int], isolated: str) -> PolicyState:
    return PolicyState(pods=pods, endpoints={isolated: Endpoint(isolated, pods[isolated],
                                                                ingress=DENY)})


def test_rules_are_swapped_atomically_under_load(pol: PolicySetup) -> None:
    # Two rule sets, both allowing a on 8080, in tries of different shapes: a SYN that met
    # an empty or half-written trie would be dropped and counted.
    a_id = pol.identity("a")
    sets = [{"b": frozenset({Rule(a_id, TCP, 8080)})},
            {"b": frozenset({Rule(a_id, TCP, 7000, 9000), Rule(a_id, UDP)})}]
    pol.sync(ingress=sets[0])
    stop = threading.Event()
    swaps = 0

    def flip() -> None:
        nonlocal swaps
        while not stop.is_set():
            pol.sync(ingress=sets[(swaps + 1) % 2])
            swaps += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    answers: list[str] = []
    try:
        end = time.monotonic() + 30
        while (swaps < 50 or len(answers) < 300) and time.monotonic() < end:
            answers.append(tcp_hello(ns(pol, "a"), pol.ip("b"), 8080))
    finally:
        stop.set()
        flipper.join()
    assert swaps >= 50
    assert all(line.startswith("b ") for line in answers)
    seen = policy_counters(pol.world.pin_dir)
    assert (seen["default_deny"], seen["no_policy_allows"]) == (0, 0)
    # b's ingress was isolated throughout: each connection was let in by a rule, never by
    # a moment without an entry (that would be not isolated).
    assert (seen["policy_allows"], seen["not_isolated"]) == (len(answers), len(answers))


def test_attached_is_false_while_a_policy_filter_is_missing(pol: PolicySetup) -> None:
    a = ns(pol, "a")
    assert pol.programs.attached(a, "eth0")
    for hook, priority in (("ingress", "0x80"), ("egress", "0x200")):
        pol.world.ns(a, "tc", "filter", "del", "dev", "eth0", hook, "pref", priority)
        assert not pol.programs.attached(a, "eth0")
        pol.programs.attach(a, "eth0")
        assert pol.programs.attached(a, "eth0")
