"""`podlab cni-test`: the conformance suite against any plugin, from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from podlab.lab.cni_runtime import NetworkList
from podlab.lab.conformance.suite import CaseResult, run_suite, summary
from podlab.lab.tables import table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cni-test", help="run the CNI conformance suite against a plugin")
    p.add_argument("--plugin-dir", action="append", default=[], metavar="DIR",
                   help="where the plugin binaries are (repeatable; /usr/lib/cni is appended)")
    p.add_argument("--conf", metavar="FILE",
                   help="a .conf or .conflist (default: podlab-cni, as a lab node's agent "
                        "configures it)")
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.set_defaults(func=cmd_cni_test)


def cmd_cni_test(args: argparse.Namespace) -> int:
    net = NetworkList.load(args.conf) if args.conf else None

    def progress(r: CaseResult) -> None:
        if not args.json:
            mark = {"pass": "✓", "fail": "✗", "known": "~", "skip": "-"}[r.outcome]
            print(f" {mark} {r.version:<6} {r.case}", file=sys.stderr)

    results = run_suite(net, args.plugin_dir, lab_name=f"cni{os.getpid() % 100000}",
                        progress=progress)
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    else:
        rows = [[r.version, r.case, r.outcome, r.detail[:90]] for r in results
                if r.outcome != "pass"]
        if rows:
            print(table(["version", "case", "outcome", "detail"], rows))
        print(summary(results))
    return 1 if any(r.outcome == "fail" for r in results) else 0
