"""NetworkPolicy for one pod as iptables rules, the way kube-router and Calico's iptables
mode program it: the baseline the eBPF policy datapath is measured against.

The pod's hook (INPUT for ingress, OUTPUT for egress, in the pod's own netns) jumps to the
pod's firewall chain: packets of known connections are accepted first (conntrack
ESTABLISHED,RELATED), then each policy that selects the pod gets a chain, jumped to in
turn. A policy's chain has one rule per (peer, port): it marks the packet, and the next rule
returns on the mark; the firewall chain accepts a marked packet after each policy and drops
what no policy marked. No ipsets: every peer address is a rule of its own, so a new
connection walks P x peers x ports rules before the last policy allows it.

Not modelled: an ipBlock's `except` (the benchmark's policies have none).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from podlab.datapath.kubeproxy.model import chain_hash

ALLOW_BIT = "0x10000"
ALLOW_MARK = f"{ALLOW_BIT}/{ALLOW_BIT}"
PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Direction:
    """Which way a pod's policies look: the hook, and which address is the pod's."""

    name: str
    hook: str
    pod_match: str
    peer_match: str


INGRESS = Direction("ingress", "INPUT", "-d", "-s")
EGRESS = Direction("egress", "OUTPUT", "-s", "-d")


@dataclass(frozen=True)
class PolicyPort:
    """`protocol` at `port`..`end_port`; `port` 0 is every port, `end_port` 0 just `port`."""

    protocol: str
    port: int = 0
    end_port: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: one of {PROTOCOLS}")

    def match(self) -> str:
        if not self.port:
            return f"-p {self.protocol}"
        ports = f"{self.port}:{self.end_port}" if self.end_port else str(self.port)
        return f"-p {self.protocol} -m {self.protocol} --dport {ports}"


@dataclass(frozen=True)
class PolicyRule:
    """One ingress (or egress) rule of a policy: `peers` are CIDRs (a pod is its /32), none
    meaning every address; no `ports` means every protocol and port."""

    peers: tuple[str, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A NetworkPolicy that selects the pod in one direction, named `ns/name`; no rules is
    default deny."""

    name: str
    rules: tuple[PolicyRule, ...] = ()


@dataclass(frozen=True)
class PodPolicies:
    """The policies that select the pod at `ip`, per direction; none leaves it open."""

    ip: str
    ingress: tuple[Policy, ...] = ()
    egress: tuple[Policy, ...] = ()


class IptablesError(RuntimeError):
    """iptables-restore refused the rules; carries its output."""


def pod_chain(pod: PodPolicies, direction: Direction) -> str:
    return "PODLAB-FW-" + chain_hash(pod.ip, direction.name)


def policy_chain(policy: Policy, direction: Direction) -> str:
    return "PODLAB-POL-" + chain_hash(policy.name, direction.name)


def _policy_rules(policy: Policy, direction: Direction) -> list[str]:
    chain = policy_chain(policy, direction)
    lines = []
    for rule in policy.rules:
        for peer in rule.peers or (None,):
            for port in rule.ports or (None,):
                match = [f"-A {chain}"]
                if peer:
                    match.append(f"{direction.peer_match} {peer}")
                if port:
                    match.append(port.match())
                lines += [" ".join([*match, f"-j MARK --set-xmark {ALLOW_MARK}"]),
                          f"-A {chain} -m mark --mark {ALLOW_MARK} -j RETURN"]
    return lines


def restore_input(pod: PodPolicies) -> str:
    """The whole filter table of the pod's netns, for `iptables-restore` (which replaces it
    in one transaction): the built-in chains, and a firewall chain per isolated direction."""
    chains = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    rules: list[str] = []
    for direction, policies in ((INGRESS, pod.ingress), (EGRESS, pod.egress)):
        if not policies:
            continue
        fw = pod_chain(pod, direction)
        chains.append(f":{fw} - [0:0]")
        rules += [f"-A {direction.hook} {direction.pod_match} {pod.ip}/32 -j {fw}",
                  f"-A {fw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                  f"-A {fw} -j MARK --set-xmark 0x0/{ALLOW_BIT}"]
        for policy in policies:
            chain = policy_chain(policy, direction)
            chains.append(f":{chain} - [0:0]")
            rules += [f'-A {fw} -m comment --comment "{policy.name}" -j {chain}',
                      f"-A {fw} -m mark --mark {ALLOW_MARK} -j ACCEPT"]
        rules.append(f'-A {fw} -m comment --comment "no policy allows" -j DROP')
        for policy in policies:
            rules += _policy_rules(policy, direction)
    return "\n".join(["*filter", *chains, *rules, "COMMIT", ""])


def apply(netns: str | None, pod: PodPolicies) -> None:
    """Make the filter table of `netns` (None: this process's) enforce exactly `pod`."""
    argv = ["iptables-restore"]
    full = ["ip", "netns", "exec", netns, *argv] if netns else argv
    proc = subprocess.run(full, input=restore_input(pod), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise IptablesError(f"{' '.join(full)} failed: {proc.stderr.strip()}")
