"""kube-proxy's iptables mode, as a generator of `iptables-restore` input.

KUBE-SERVICES matches a ClusterIP and port and jumps to the service port's KUBE-SVC-*
chain; that chain picks an endpoint with `statistic --mode random`, the i-th rule of n
taken with probability 1/(n-i) so that every endpoint is equally likely; each KUBE-SEP-*
chain DNATs to its endpoint (and marks hairpin traffic for masquerade). A service with
no endpoints is rejected in the filter table, as kube-proxy does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from podlab.datapath.kubeproxy.model import Backend, ServicePort, chain_hash

MASQ_MARK = "0x4000/0x4000"
# (table, built-in chain, kube-proxy's chain it jumps to)
HOOKS = (
    ("nat", "PREROUTING", "KUBE-SERVICES"),
    ("nat", "OUTPUT", "KUBE-SERVICES"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING"),
    ("filter", "OUTPUT", "KUBE-SERVICES"),
    ("filter", "FORWARD", "KUBE-SERVICES"),
)
HOOK_COMMENT = "podlab kube-proxy"


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + chain_hash(sp.key, sp.protocol)


def sep_chain(sp: ServicePort, backend: Backend) -> str:
    return "KUBE-SEP-" + chain_hash(sp.key, sp.protocol, f"{backend.ip}:{backend.port}")


def probability(i: int, n: int) -> str:
    """The i-th of n endpoints is chosen among the remaining n-i with probability 1/(n-i)."""
    return f"{1.0 / (n - i):0.10f}"


def restore_input(services: Sequence[ServicePort], stale_chains: Iterable[str] = ()) -> str:
    """The whole ruleset for `iptables-restore --noflush`: KUBE-* chains are declared (and so
    flushed) and rewritten; chains of services that are gone are deleted."""
    nat = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"]
    nat_rules = [
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark --mark {MASQ_MARK} -j MASQUERADE",
    ]
    flt = [":KUBE-SERVICES - [0:0]"]
    flt_rules = []
    for sp in services:
        comment = f'-m comment --comment "{sp.key}"'
        match = f"-d {sp.cluster_ip}/32 -p {sp.protocol} -m {sp.protocol} --dport {sp.port}"
        if not sp.backends:
            flt_rules.append(f'-A KUBE-SERVICES {match} -m comment --comment "{sp.key} has no '
                             f'endpoints" -j REJECT --reject-with icmp-port-unreachable')
            continue
        svc = svc_chain(sp)
        nat.append(f":{svc} - [0:0]")
        nat_rules.append(f"-A KUBE-SERVICES {match} {comment} -j {svc}")
        n = len(sp.backends)
        for i, backend in enumerate(sp.backends):
            sep = sep_chain(sp, backend)
            nat.append(f":{sep} - [0:0]")
            pick = ("" if i == n - 1 else
                    f"-m statistic --mode random --probability {probability(i, n)} ")
            nat_rules.append(f"-A {svc} {comment} {pick}-j {sep}")
            nat_rules += [
                f"-A {sep} {comment} -s {backend.ip}/32 -j KUBE-MARK-MASQ",
                f"-A {sep} {comment} -p {sp.protocol} -m {sp.protocol} -j DNAT "
                f"--to-destination {backend.ip}:{backend.port}",
            ]
    # Gone chains are declared (which flushes them, dropping their references) and then
    # deleted, so chains that point at each other go in one transaction.
    live = {line[1:].split()[0] for line in nat}
    gone = sorted(set(stale_chains) - live)
    nat += [f":{chain} - [0:0]" for chain in gone]
    nat_rules += [f"-X {chain}" for chain in gone]
    return "\n".join(["*filter", *flt, *flt_rules, "COMMIT", "*nat", *nat, *nat_rules,
                      "COMMIT", ""])
