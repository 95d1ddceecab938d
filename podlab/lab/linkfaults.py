"""Seeded packet loss on a link, with nftables, so a faulty run replays packet for packet.

This kernel has no netem, and nftables' `numgen random` cannot be seeded. So a fault counts
the packets it matches (`numgen inc mod 10000`) and drops those whose count falls on one of
a set of residues drawn from `random.Random(seed)`: 5 % loss is 500 residues of 10,000, the
same seed drops the same packets in the same order. The period is long so that drops land
as independent loss lands, sometimes back to back (a query and its retry); with 5 residues
of 100 they would sit at fixed gaps and a retry would almost never be lost.

Delay is not offered: nftables cannot hold a packet, the kernel has neither netem nor the
fq qdisc (which honours a departure time a tc program could set), and queueing every packet
to a userspace process would measure that process (docs/faults.md).

A fault is one table in one named netns, `podlab_<lab>_faults`, replaced whole in one
`nft -f` transaction and deleted by `heal`. Faults go in netns only, never the root netns:
a lab's `down` and `clean` remove its netns, and the tables with them, so nothing of a fault
can outlive its lab (podlab.lab.ownership needs no label of its own for them).
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path

from podlab.lab.errors import CommandError
from podlab.lab.state import LabState

PERIOD = 10000  # the counter's modulus: loss is set in hundredths of a percent
PROTOCOLS = ("udp", "tcp")


@dataclass(frozen=True)
class Match:
    """The packets a fault may drop: these protocols, to `address` (an IP or a CIDR) and
    `port` when given; with `replies`, also the packets coming back from them, which then
    share the one count (real loss hits both ways)."""

    protocols: tuple[str, ...] = PROTOCOLS
    address: str | None = None
    port: int | None = None
    replies: bool = False

    def __post_init__(self) -> None:
        if not self.protocols or set(self.protocols) - set(PROTOCOLS):
            raise ValueError(f"protocols must be among {PROTOCOLS}, not {self.protocols}")
        if self.replies and self.address is None and self.port is None:
            raise ValueError("replies needs an address or a port to tell them apart")

    def rules(self) -> list[str]:
        """nft match expressions, one rule each: the way there, then the way back."""
        protos = ", ".join(self.protocols)
        family = "ip" if self.address is None or ip_network(self.address).version == 4 \
            else "ip6"
        there = [f"meta l4proto {{ {protos} }}"]
        back = list(there)
        if self.address is not None:
            there.append(f"{family} daddr {self.address}")
            back.append(f"{family} saddr {self.address}")
        if self.port is not None:
            there.append(f"th dport {self.port}")
            back.append(f"th sport {self.port}")
        return [" ".join(there)] + ([" ".join(back)] if self.replies else [])


def residues(loss: float, seed: int) -> list[int]:
    """The counts (mod PERIOD) a fault drops: `loss` of them, drawn by the seed."""
    if not 0 <= loss <= 1:
        raise ValueError(f"loss is a fraction in [0, 1], not {loss}")
    return sorted(random.Random(seed).sample(range(PERIOD), round(loss * PERIOD)))


def table_name(lab: str) -> str:
    """nft identifiers take no '-'; lab names take no '_', so no two labs collide."""
    return f"podlab_{lab.replace('-', '_')}_faults"


def ruleset(table: str, match: Match, drop: list[int]) -> str:
    """One transaction replacing `table`: every matched packet takes the next count, in
    the order they arrive.

    Only arriving packets (prerouting: forwarded or delivered here) are dropped, silently as
    a wire drops them: a drop on output fails the sender's send() with EPERM, and a resolver
    told so tries its next server at once instead of waiting out its timeout. So a fault on
    a pod's queries goes in the netns they arrive in (the node), and `replies` there catches
    the answers coming back through it. Raw priority (-300), before conntrack and DNAT: a
    lost packet leaves no conntrack entry, and the address matched is the one the sender
    wrote (a ClusterIP, not the endpoint it is DNATed to)."""
    if len(drop) == PERIOD:  # a dead link: no set of every residue to load
        lossy = "counter name dropped drop"
    elif drop:
        lossy = f"numgen inc mod {PERIOD} {{ {', '.join(map(str, drop))} }} " \
            "counter name dropped drop"
    else:  # an empty set is a syntax error; nothing drops
        lossy = "counter name dropped"
    return "\n".join([
        f"table inet {table} {{}}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  counter matched {}",
        "  counter dropped {}",
        "  chain prerouting {",
        "    type filter hook prerouting priority raw; policy accept;",
        *(f"    {rule} jump lossy" for rule in match.rules()),
        "  }",
        "  chain lossy {",
        "    counter name matched",
        f"    {lossy}",
        "  }",
        "}",
        "",
    ])


def _nft(netns: str, *args: str, script: str | None = None) -> str:
    argv = ["ip", "netns", "exec", netns, "nft", *args]
    done = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done.stdout


def _tables(netns: str) -> set[str]:
    data = json.loads(_nft(netns, "-j", "list", "tables", "inet"))
    return {item["table"]["name"] for item in data["nftables"] if "table" in item}


@dataclass
class LinkFault:
    """Seeded loss on the packets `match` selects in `netns`."""

    netns: str
    match: Match
    loss: float = 0.05
    seed: int = 7
    lab: str = "lab"
    drop: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.drop = residues(self.loss, self.seed)

    @property
    def table(self) -> str:
        return table_name(self.lab)

    def apply(self) -> LinkFault:
        """Install (or replace, restarting the count) the fault."""
        _nft(self.netns, "-f", "-", script=ruleset(self.table, self.match, self.drop))
        return self

    def heal(self) -> None:
        """Remove the fault; nothing to do once its netns is gone (the lab went down)."""
        if Path("/run/netns", self.netns).exists() and self.table in _tables(self.netns):
            _nft(self.netns, "delete", "table", "inet", self.table)

    def counts(self) -> tuple[int, int]:
        """(matched, dropped) packets so far."""
        data = json.loads(_nft(self.netns, "-j", "list", "counters", "table", "inet",
                               self.table))
        found = {c["counter"]["name"]: c["counter"]["packets"]
                 for c in data["nftables"] if "counter" in c}
        return found["matched"], found["dropped"]


class LinkFaults:
    """A lab's link faults, one per netns, all healed together: `lab.faults`, healed by
    `down`. Usable alone with netns names (the benchmark's plain netns)."""

    def __init__(self, lab: str, seed: int = 7, state: LabState | None = None) -> None:
        """`seed`: every fault's unless given, the lab's (`Lab(seed=...)`), so a lab's run
        replays with its seed; `state`: to name a netns by node (`n1`), pod (`ns/pod`) or
        `vpc` (the VPC router)."""
        self.lab, self.seed, self.state = lab, seed, state
        self.active: dict[str, LinkFault] = {}

    def netns(self, target: str) -> str:
        """The netns of a node, a pod or the VPC router (`vpc`); else `target` itself."""
        if self.state is None:
            return target
        if target == "vpc":
            return self.state.fabric_netns
        if "/" in target:
            return self.state.pod(*target.split("/", 1)).netns
        if any(node.name == target for node in self.state.nodes):
            return self.state.node(target).netns
        return target

    def loss(self, target: str, match: Match, loss: float = 0.05,
             seed: int | None = None) -> LinkFault:
        """Seeded loss on the packets `match` selects arriving in `target` (a node, a pod,
        `vpc` or a netns); replaces the fault already there. `.heal()` and `.counts()` on
        the handle."""
        return self.add(self.netns(target), match, loss, self.seed if seed is None else seed)

    def add(self, netns: str, match: Match, loss: float = 0.05,
            seed: int = 7) -> LinkFault:
        """Seeded loss in `netns`; replaces the fault already there."""
        fault = LinkFault(netns, match, loss, seed, self.lab).apply()
        self.active[netns] = fault
        return fault

    def heal(self, netns: str | None = None) -> None:
        """Remove the fault in `netns`, or every fault when none is named."""
        for name in [netns] if netns is not None else list(self.active):
            fault = self.active.pop(name, None)
            if fault is not None:
                fault.heal()
