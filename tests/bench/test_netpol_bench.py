"""NetworkPolicy: the new-connection rate into a server pod selected by P policies, and the
time from a policy change until a new connection meets it.

Rate paths, in the same run on the same namespaces: the tc programs on the server's eth0
with nothing isolated ("none"); the same programs enforcing the P policies ("ebpf"); and no
programs but an iptables implementation of the same policies in the server's netns, a chain
per policy as kube-router and Calico's iptables mode program it ("iptables",
podlab.datapath.policy_iptables). Each policy allows 5 pods and an ipBlock on TCP 80; the
client is allowed only by the last policy's ipBlock, so iptables walks every rule first. The
paths take turns, 3 rounds (8 in full), and each one's best round is reported.
P = 1 and 100 (PODLAB_BENCH_FULL=1 adds 1,000).

Enforcement latency: 100 pods on the node, all selected by a policy that allows the client
and is then taken away, over and over; from the start of `PolicyMaps.sync` until the first
new connection that meets the new state.

Prints rates, ratios and percentiles; asserts no time, only that every path served every
connection, that the isolating paths dropped a stranger, and that every change was seen.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from podlab.datapath import policy_iptables
from podlab.datapath.bpf import PolicyMaps, Programs
from podlab.datapath.bpf.policy_model import (
    FIRST_CIDR_IDENTITY,
    FIRST_POD_IDENTITY,
    Endpoint,
    PolicyState,
    Rule,
)
from podlab.datapath.policy_iptables import PodPolicies, Policy, PolicyPort, PolicyRule
from tests.bench.connect import BURSTS, accept_forever, connect_rate
from tests.e2e.bpf.world import World, abort, socket_in

pytestmark = [pytest.mark.root, pytest.mark.kernel("bpf", "bpffs", "ethtool", "iptables",
                                                   "nftables")]
FULL = os.environ.get("PODLAB_BENCH_FULL") == "1"
SIZES = (1, 100, 1000) if FULL else (1, 100)
CONNECTIONS = 5000 if FULL else 2000
ROUNDS = 8 if FULL else 3  # each path's best round is reported (of BURSTS bursts each)
CHANGES = 100 if FULL else 20
NODE_PODS = 100
PORT = 80
TCP = 6  # IPPROTO_TCP
PEER_PODS = 5  # per policy, besides its ipBlock
FIRST_PEER = IPv4Address("10.78.0.1")  # peer pods that live on other nodes
FIRST_BLOCK = IPv4Network("172.16.0.0/24")
FIRST_NODE_POD = IPv4Address("10.79.0.1")  # the latency test's other local pods
DROP_WAIT = 0.3  # a SYN unanswered this long was dropped (no retransmit before 1 s)


@dataclass(frozen=True)
class Peer:
    cidr: str
    identity: int


@dataclass(frozen=True)
class BenchPolicy:
    """One policy selecting the server: its peers, each allowed on TCP PORT."""

    name: str
    peers: tuple[Peer, ...]


@dataclass(frozen=True)
class Row:
    size: int
    path: str  # "none" | "ebpf" | "iptables"
    rate: float  # connections per second, the best round's
    paired: float  # the median over rounds of eBPF's rate / this path's, measured side by side
    program_s: float | None = None  # time to write the P policies


def bench_policies(count: int, client_block: str) -> list[BenchPolicy]:
    """`count` policies of 5 pods and a /24 each; the last one's block is the client's."""
    ids = itertools.count(FIRST_POD_IDENTITY + 16)  # below: the world's own pods
    policies = []
    for i in range(count):
        pods = tuple(Peer(f"{FIRST_PEER + PEER_PODS * i + j}/32", next(ids))
                     for j in range(PEER_PODS))
        block = client_block if i == count - 1 else str(
            IPv4Network((int(FIRST_BLOCK.network_address) + 256 * i, 24)))
        policies.append(BenchPolicy(f"bench/p{i}", (*pods, Peer(block, FIRST_CIDR_IDENTITY + i))))
    return policies


def pod_identities(world: World) -> dict[str, int]:
    return {p.ip: FIRST_POD_IDENTITY + p.index for p in world.pods.values()}


def peer_identities(policies: Sequence[BenchPolicy]) -> tuple[dict[str, int], dict[str, int]]:
    """What the maps must know of `policies`' peers: pods by address, blocks by prefix."""
    peers = [peer for policy in policies for peer in policy.peers]
    return ({p.cidr.removesuffix("/32"): p.identity for p in peers if p.cidr.endswith("/32")},
            {p.cidr: p.identity for p in peers if not p.cidr.endswith("/32")})


def allowed(policies: Sequence[BenchPolicy]) -> set[Rule]:
    return {Rule(peer.identity, TCP, PORT) for policy in policies for peer in policy.peers}


def ebpf_state(world: World, policies: Sequence[BenchPolicy], isolated: bool) -> PolicyState:
    """What the maps hold for `policies`: the server isolated by them, or by nothing."""
    pods, cidrs = peer_identities(policies)
    ids = pod_identities(world)
    server = world.pods["server"].ip
    endpoint = (Endpoint(server, ids[server], ingress=frozenset(allowed(policies)),
                         ingress_policies=tuple(p.name for p in policies))
                if isolated else Endpoint(server, ids[server]))
    return PolicyState({**pods, **ids}, cidrs, {server: endpoint})


def iptables_policies(world: World, policies: Sequence[BenchPolicy]) -> PodPolicies:
    allow = (PolicyPort("tcp", PORT),)
    return PodPolicies(world.pods["server"].ip, ingress=tuple(
        Policy(p.name, (PolicyRule(tuple(peer.cidr for peer in p.peers), allow),))
        for p in policies))


def connects(netns: str, ip: str, timeout: float = DROP_WAIT) -> bool:
    """Whether a new TCP connection to ip:PORT is accepted; closed with a reset."""
    sock = socket_in(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, PORT))
    except OSError:
        sock.close()
        return False
    abort(sock)
    return True


def flush_netfilter(world: World) -> None:
    """No path pays for another's leftovers: emptied tables keep their hooks (and
    netfilter's conntrack) in place, which every packet would traverse."""
    world.ns(world.pods["server"].netns, "nft", "flush", "ruleset")


@pytest.fixture
def bench_world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        for pod in ("client", "server", "stranger"):
            world.add_pod(pod)
        accept_forever(world, "server", PORT)
        yield world
    finally:
        world.close()


def policy_maps(world: World) -> PolicyMaps:
    maps = PolicyMaps(world.pin_dir)
    world.cleanups.append(maps.close)
    return maps


def test_new_connection_rate_ebpf_policy_against_none_and_iptables(
        bench_world: World, connect_loop: Path) -> None:
    w = bench_world
    client, stranger = w.pods["client"].netns, w.pods["stranger"].netns
    server = w.pods["server"]
    client_block = str(IPv4Network(f"{w.pods['client'].ip}/24", strict=False))
    programs = w.programs()
    maps = policy_maps(w)
    rates: dict[tuple[int, str], list[float]] = defaultdict(list)
    program: dict[tuple[int, str], list[float]] = defaultdict(list)
    let_in: list[tuple[int, str]] = []  # isolating paths that let the stranger connect

    def measure(size: int, path: str) -> None:
        if path != "none" and connects(stranger, server.ip):
            let_in.append((size, path))
        rates[(size, path)].append(connect_rate(connect_loop, client, server.ip, PORT,
                                                CONNECTIONS))

    for size in SIZES:
        policies = bench_policies(size, client_block)
        open_state = ebpf_state(w, policies, isolated=False)
        isolated = ebpf_state(w, policies, isolated=True)
        rules = iptables_policies(w, policies)
        for _ in range(ROUNDS):  # interleaved, so that a noisy moment hits one round only
            flush_netfilter(w)
            programs.attach(server.netns, "eth0")
            maps.sync(open_state)
            measure(size, "none")
            program[(size, "ebpf")].append(timed(maps.sync, isolated))
            measure(size, "ebpf")
            programs.detach(server.netns, "eth0")
            maps.sync(PolicyState())
            program[(size, "iptables")].append(timed(policy_iptables.apply, server.netns,
                                                     rules))
            measure(size, "iptables")
    flush_netfilter(w)
    rows = [Row(size, path, max(got), statistics.median(
                e / x for e, x in zip(rates[(size, "ebpf")], got, strict=True)),
                min(program[(size, path)], default=None)) for (size, path), got in rates.items()]
    print(rate_table(rows))
    assert {(r.size, r.path) for r in rows} == {
        (n, p) for n in SIZES for p in ("none", "ebpf", "iptables")}
    assert let_in == []


def timed(action: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def rate_table(rows: list[Row]) -> str:
    by = {(r.size, r.path): r for r in rows}
    lines = [f"\nnew connections/s into a pod selected by P policies (5 pods + an ipBlock "
             f"each; best of {ROUNDS} x {BURSTS} x {CONNECTIONS}, C client); program = time "
             "to write them; paired = median of the rounds' ebpf/x",
             f"{'P':>6} {'path':<9} {'conn/s':>9} {'ebpf/x':>7} {'paired':>7} {'program':>9}"]
    for r in rows:
        ratio = by[(r.size, "ebpf")].rate / r.rate
        program = f"{r.program_s * 1000:>7.1f}ms" if r.program_s is not None else ""
        lines.append(f"{r.size:>6} {r.path:<9} {r.rate:>9.0f} {ratio:>7.2f} {r.paired:>7.2f} "
                     f"{program:>9}")
    top = SIZES[-1]
    ebpf = by[(top, "ebpf")].rate
    lines.append(f"at P={top}: ebpf/none {ebpf / by[(top, 'none')].rate:.2f}, paired "
                 f"{by[(top, 'none')].paired:.2f} (goal >= 0.90); ebpf/iptables "
                 f"{ebpf / by[(top, 'iptables')].rate:.2f}, paired "
                 f"{by[(top, 'iptables')].paired:.2f} (goal >= 3)")
    return "\n".join(lines)


def node_state(world: World, allow_client: bool) -> PolicyState:
    """NODE_PODS local pods (the server and made-up others), each isolated by the same
    10 bench policies and by one that allows the client, or not."""
    base = bench_policies(10, str(FIRST_BLOCK))
    pods, cidrs = peer_identities(base)
    ids = pod_identities(world)
    rules = allowed(base)
    if allow_client:
        rules.add(Rule(ids[world.pods["client"].ip], TCP, PORT))
    local = {str(FIRST_NODE_POD + i): FIRST_POD_IDENTITY + 1000 + i
             for i in range(NODE_PODS - 1)}
    local[world.pods["server"].ip] = ids[world.pods["server"].ip]
    names = tuple(p.name for p in base) + (("bench/allow-client",) if allow_client else ())
    return PolicyState({**pods, **ids, **local}, cidrs, {
        ip: Endpoint(ip, identity, ingress=frozenset(rules), ingress_policies=names)
        for ip, identity in local.items()})


def test_policy_change_reaches_new_connections(bench_world: World) -> None:
    w = bench_world
    client, server = w.pods["client"].netns, w.pods["server"]
    programs: Programs = w.programs()
    programs.attach(server.netns, "eth0")
    maps = policy_maps(w)
    maps.sync(node_state(w, allow_client=True))
    assert connects(client, server.ip)
    seen: list[float] = []
    syncs: list[float] = []
    at_once = 0  # changes the first connection after the sync already met
    for change in range(CHANGES):
        allow = change % 2 == 1  # first take the client's allow away, then give it back
        state = node_state(w, allow)
        start = time.perf_counter()
        maps.sync(state)
        syncs.append(time.perf_counter() - start)
        met = first_meeting(client, server.ip, allow)
        if met is not None:
            seen.append(met[0] - start)
            at_once += met[1] == 1
    print(latency_table(seen, syncs, at_once))
    assert len(seen) == CHANGES


def first_meeting(netns: str, ip: str, allow: bool,
                  timeout: float = 5.0) -> tuple[float, int] | None:
    """When the first new connection that found `allow` was started (its SYN met the
    policy then), and how many tries that took; None if none did within `timeout`."""
    end = time.perf_counter() + timeout
    for tries in itertools.count(1):
        probe = time.perf_counter()
        if probe > end:
            break
        if connects(netns, ip) == allow:
            return probe, tries
    return None


def latency_table(seen: list[float], syncs: list[float], at_once: int) -> str:
    def pct(xs: list[float], q: int) -> str:
        return f"{statistics.quantiles(xs, n=100, method='inclusive')[q - 1] * 1000:>8.1f}ms"

    return "\n".join([
        f"\npolicy change on {NODE_PODS} pods -> first new connection that meets it "
        f"({len(seen)} changes, allow and deny alternating)",
        f"{'':<24} {'p50':>10} {'p99':>10}",
        f"{'sync start -> enforced':<24} {pct(seen, 50):>10} {pct(seen, 99):>10}",
        f"{'PolicyMaps.sync':<24} {pct(syncs, 50):>10} {pct(syncs, 99):>10}",
        f"the first connection after the sync met the change in {at_once} of {len(seen)}",
    ])

