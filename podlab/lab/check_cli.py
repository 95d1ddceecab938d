"""`podlab check`: does the lab keep its promises? The invariants of podlab.lab.invariants
(docs/invariants.md) over a running lab; exit code 1 names each violation."""

from __future__ import annotations

import argparse
import json
import sys
import time

from podlab.lab.shell import add_name, find_lab


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="check a lab's invariants: unique, routed addresses, "
                                     "agents agreeing with the cloud (and reachability)")
    add_name(p)
    p.add_argument("--reach", action="store_true",
                   help="also probe every Ready pod from every other that policy allows")
    p.add_argument("--within", type=float, default=0.0, metavar="SECONDS",
                   help="after a fault: check again until they hold, this long at most")
    p.add_argument("--json", action="store_true", help="the violations as a JSON list")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from podlab.lab.invariants import settled  # here: it imports pyroute2

    state = find_lab(args.name)
    started = time.monotonic()
    found = settled(state, reach=args.reach, within=args.within)
    if args.json:
        json.dump([v.to_dict() for v in found], sys.stdout, indent=2)
        print()
    elif found:
        for v in found:
            print(v)
    else:
        print(f"ok: every invariant holds{' (reach included)' if args.reach else ''} "
              f"({time.monotonic() - started:.2f}s)")
    return 1 if found else 0
