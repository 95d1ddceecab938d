"""kube-proxy's nftables mode, as a generator of one atomic `nft -f` transaction.

A verdict map keyed by `daddr . l4proto . dport` sends each ClusterIP:port to its service
chain; `numgen random mod n` picks an endpoint chain, which DNATs. Services without
endpoints are rejected through a second map in filter hooks. The table is replaced whole
in one transaction, so a sync is never half-applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from podlab.datapath.kubeproxy.model import Backend, ServicePort, chain_hash

TABLE = "podlab-kube-proxy"
MASQ_BIT = "0x00004000"


def service_chain(sp: ServicePort) -> str:
    return "service-" + chain_hash(sp.key, sp.protocol)


def endpoint_chain(sp: ServicePort, backend: Backend) -> str:
    return "endpoint-" + chain_hash(sp.key, sp.protocol, f"{backend.ip}:{backend.port}")


def ruleset(services: Sequence[ServicePort]) -> str:
    served = [sp for sp in services if sp.backends]
    empty = [sp for sp in services if not sp.backends]
    lines = [
        f"table ip {TABLE} {{}}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        "  map service-ips {",
        "    type ipv4_addr . inet_proto . inet_service : verdict",
        *_elements([(sp, f"goto {service_chain(sp)}") for sp in served]),
        "  }",
        "  map no-endpoint-services {",
        "    type ipv4_addr . inet_proto . inet_service : verdict",
        *_elements([(sp, "goto reject-chain") for sp in empty]),
        "  }",
        "  chain nat-prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    jump services",
        "  }",
        "  chain nat-output {",
        "    type nat hook output priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain nat-postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    meta mark & {MASQ_BIT} == {MASQ_BIT} masquerade",
        "  }",
        "  chain filter-output {",
        "    type filter hook output priority -110; policy accept;",
        "    ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "  }",
        "  chain filter-forward {",
        "    type filter hook forward priority -110; policy accept;",
        "    ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "  }",
        "  chain reject-chain {",
        "    reject",
        "  }",
        "  chain mark-for-masquerade {",
        f"    meta mark set meta mark | {MASQ_BIT}",
        "  }",
        "  chain services {",
        "    ip daddr . meta l4proto . th dport vmap @service-ips",
        "  }",
    ]
    for sp in served:
        picks = ", ".join(f"{i} : goto {endpoint_chain(sp, b)}" for i, b in enumerate(sp.backends))
        lines += [
            f"  chain {service_chain(sp)} {{",
            f'    comment "{sp.key}"',
            f"    numgen random mod {len(sp.backends)} vmap {{ {picks} }}",
            "  }",
        ]
        for b in sp.backends:
            lines += [
                f"  chain {endpoint_chain(sp, b)} {{",
                f'    comment "{sp.key} -> {b.ip}:{b.port}"',
                f"    ip saddr {b.ip} jump mark-for-masquerade",
                f"    meta l4proto {sp.protocol} dnat to {b.ip}:{b.port}",
                "  }",
            ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _elements(entries: list[tuple[ServicePort, str]]) -> list[str]:
    if not entries:
        return []
    items = ", ".join(f"{sp.cluster_ip} . {sp.protocol} . {sp.port} : {verdict}"
                      for sp, verdict in entries)
    return [f"    elements = {{ {items} }}"]
