"""`podlab agent`: run the node agent, or ask a running one over its socket."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from podlab.cni import protocol
from podlab.cni.agent import run
from podlab.cni.config import AgentConfig

DEFAULT_SOCKET = str(AgentConfig.socket)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="the node agent: its ENI/IP pool and socket")
    verbs = p.add_subparsers(required=True, metavar="VERB")
    daemon = verbs.add_parser("run", help="run the agent until SIGTERM (see docs/agent.md)")
    daemon.add_argument("--config", required=True, type=Path, metavar="FILE",
                        help="JSON or YAML, Terway eni_conf keys accepted")
    daemon.set_defaults(func=lambda args: run(args.config))
    for verb, text in (("info", "the pool: ENIs, addresses and who holds them"),
                       ("alloc", "get an address for a pod"),
                       ("release", "give a pod's address back"),
                       ("gc", "release the addresses of pods not listed")):
        v = verbs.add_parser(verb, help=text)
        v.add_argument("--socket", default=DEFAULT_SOCKET)
        if verb in ("alloc", "release"):
            v.add_argument("pod", help="namespace/name")
            v.add_argument("--container", default="")
        if verb == "gc":
            v.add_argument("pods", nargs="*", help="namespace/name of every live pod")
        v.set_defaults(func=cmd_call, verb=verb)


def cmd_call(args: argparse.Namespace) -> int:
    fields = {k: getattr(args, k) for k in ("pod", "container", "pods") if hasattr(args, k)}
    try:
        answer = protocol.call(args.socket, args.verb, **fields)
    except (protocol.AgentError, protocol.AgentUnavailable) as e:
        print(f"podlab agent {args.verb}: {e}", file=sys.stderr)
        return 1
    answer.pop("ok")
    print(json.dumps(answer, indent=2))
    return 0
