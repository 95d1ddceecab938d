"""`podlab cloud`: a lab's cloud from the inside (its state, call log and faults, or a reset),
through the admin endpoints only the lab's owner can reach: on the host's loopback, with
the admin token from the lab's run dir (mode 0600)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from podlab.lab.errors import LabError
from podlab.lab.shell import add_name, find_lab

VERBS = {"state": "every ENI and the free addresses per vSwitch",
         "calls": "the call log: action, parameters, code, status, seconds",
         "faults": "the fault rules in force; with --set FILE, replace them",
         "reset": "a fresh world from the topology (pods' addresses are lost: tests only)"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cloud", help="look into a lab's emulated cloud, or set its faults")
    p.add_argument("verb", choices=list(VERBS), help="; ".join(f"{k}: {v}"
                                                          for k, v in VERBS.items()))
    add_name(p)
    p.add_argument("--set", type=Path, metavar="FILE",
                   help="with faults: a JSON file of rules and throttles (docs/fakecloud.md)")
    p.set_defaults(func=cmd_cloud)


def admin_call(name: str, verb: str, body: Any = None) -> Any:
    """One admin call on lab `name`'s cloud, as its owner."""
    state = find_lab(name)
    if not state.cloud_admin:
        raise LabError(f"lab {name!r} has no cloud yet")
    token = state.cloud_admin_token_file.read_text()
    post = verb == "reset" or body is not None
    request = urllib.request.Request(
        f"{state.cloud_admin}/_podlab/{verb}", method="POST" if post else "GET",
        data=json.dumps(body).encode() if body is not None else (b"" if post else None),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        raise LabError(f"the cloud of lab {name!r} refused {verb}: {e.read().decode()}") from None
    except OSError as e:
        raise LabError(f"the cloud of lab {name!r} does not answer: {e}; is it up "
                       f"(`podlab status --name {name}`)?") from None


def cmd_cloud(args: argparse.Namespace) -> int:
    body = None
    if args.set is not None:
        if args.verb != "faults":
            raise LabError("--set goes with faults")
        try:
            body = json.loads(args.set.read_text())
        except (OSError, ValueError) as e:
            raise LabError(f"--set {args.set}: {e}") from None
    json.dump(admin_call(args.name, args.verb, body), sys.stdout, indent=2)
    print()
    return 0
