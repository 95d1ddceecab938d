"""`podlab bpf services|backends|conntrack`: a node's eBPF Service maps as its agent pinned
them (the lab's `cilium bpf lb list` / `cilium bpf ct list`), read only, beside the agent
and whether or not it runs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from podlab.lab.errors import LabError
from podlab.lab.shell import add_name, find_lab
from podlab.lab.tables import table

VERBS = {"services": "each frontend (ClusterIP:port/protocol) with its backends' count",
         "backends": "each frontend's backends, slot by slot",
         "conntrack": "the translated connections: client, Service, backend, expiry"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bpf", help="look into a node's eBPF Service maps")
    p.add_argument("verb", choices=list(VERBS), help="; ".join(f"{k}: {v}"
                                                          for k, v in VERBS.items()))
    add_name(p)
    p.add_argument("--node", default="n1", help="the node (default n1)")
    p.add_argument("--json", action="store_true", help="JSON, for scripts")
    p.set_defaults(func=cmd_bpf)


def pin_dir(name: str, node: str) -> Path:
    state = find_lab(name)
    try:
        proxy = state.node(node).service_proxy
    except KeyError:
        raise LabError(f"lab {name!r} has no node {node!r}; its nodes are in "
                       f"`podlab status --name {name}`") from None
    if proxy != "ebpf":
        raise LabError(f"lab {name!r} serves Services by {proxy or 'nothing'}, not eBPF: "
                       f"no maps (`podlab up --service-proxy ebpf`)")
    return state.dir / "bpf" / node


def rows(verb: str, pins: Path) -> list[dict[str, Any]]:
    from podlab.datapath import bpf  # libbpf through ctypes: not for `podlab --help`

    if verb == "conntrack":
        ct = bpf.Conntrack(pins)
        try:
            return [asdict(c) for c in ct.connections()]
        finally:
            ct.close()
    out = []
    for f, p in sorted(bpf.programmed(pins).items(), key=lambda fp: fp[0]):
        frontend = {"frontend": f"{f.cluster_ip}:{f.port}/{f.protocol}", "id": p.id,
                    "revision": p.rev}
        if verb == "services":
            out.append({**frontend, "backends": len(p.backends),
                        "affinity_timeout": p.affinity_timeout})
        else:
            out += [{**frontend, "slot": i, "backend": f"{b.ip}:{b.port}"}
                    for i, b in enumerate(p.backends)]
    return out


def cmd_bpf(args: argparse.Namespace) -> int:
    from podlab.datapath.model import DatapathError  # what libbpf's errors are

    pins = pin_dir(args.name, args.node)
    try:
        found = rows(args.verb, pins)
    except (OSError, DatapathError) as e:  # the pins are not there (yet)
        raise LabError(f"cannot read the eBPF maps of node {args.node} in {pins}: {e}") from None
    if args.json:
        print(json.dumps(found, indent=2))
    elif found:
        print(table(list(found[0]), [list(r.values()) for r in found]))
    else:
        what = "connections" if args.verb == "conntrack" else "Services"
        print(f"no {what} in node {args.node}'s eBPF maps", file=sys.stderr)
    return 0
