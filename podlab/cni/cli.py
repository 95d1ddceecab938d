"""`podlab-agent` (`python -m podlab.cni`; the lab's CLI has it as `podlab agent` too): run
the node agent, or ask a running one over its socket.

The node's own command: it imports the agent and nothing of the lab, and the questions
to a running agent import neither the SDKs nor the agent (only `run` and `zygote` do).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from podlab.cni import protocol
from podlab.cni.config import AgentConfig

DEFAULT_SOCKET = str(AgentConfig.socket)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podlab-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbs(parser)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]
             ) -> list[argparse.ArgumentParser]:
    """The same verbs as `podlab agent` in another program's CLI; see `add_verbs`."""
    return add_verbs(sub.add_parser("agent", help="the node agent: its ENI/IP pool and socket"))


def add_verbs(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The verbs; returns those that ask a running agent, for a caller to add its own ways
    of finding the socket (the lab's CLI: a lab and a node)."""
    clients = []
    verbs = parser.add_subparsers(required=True, metavar="VERB")
    daemon = verbs.add_parser("run", help="run the agent until SIGTERM (see docs/agent.md)")
    daemon.add_argument("--config", required=True, type=Path, metavar="FILE",
                        help="JSON or YAML, Terway eni_conf keys accepted")
    daemon.set_defaults(func=cmd_run)
    zygote = verbs.add_parser(
        "zygote", help="fork agents into node namespaces from one process that imported "
                       "them once (many nodes on one host: a lab); JSON lines on stdin")
    zygote.set_defaults(func=cmd_zygote)
    for verb, text in (("info", "the pool: ENIs, addresses and who holds them"),
                       ("alloc", "get an address for a pod"),
                       ("release", "give a pod's address back"),
                       ("gc", "release the addresses of pods not listed"),
                       ("allow-sampling", "make 1 in N allowed new connections a flow, "
                                          "until the agent restarts (0: none; eBPF only)")):
        v = verbs.add_parser(verb, help=text)
        v.add_argument("--socket", default=DEFAULT_SOCKET, help="the agent's unix socket")
        if verb in ("alloc", "release"):
            v.add_argument("pod", help="namespace/name")
            v.add_argument("--container", default="", help="the pod's container id")
        if verb == "gc":
            v.add_argument("pods", nargs="*", help="namespace/name of every live pod")
            v.add_argument("--no-live-pods", action="store_true",
                           help="no pod lives: release every address (an empty list is "
                                "refused, since a forgotten argument would do the same)")
        if verb == "allow-sampling":
            v.add_argument("every", type=int, metavar="N", help="1 in N; 0 for none")
        v.set_defaults(func=cmd_call, verb=verb)
        clients.append(v)
    return clients


def cmd_run(args: argparse.Namespace) -> int:
    from podlab.cni.agent import run

    return run(args.config)


def cmd_zygote(_args: argparse.Namespace) -> int:
    from podlab.cni.zygote import serve

    return serve()


def cmd_call(args: argparse.Namespace) -> int:
    if args.verb == "gc" and not args.pods and not args.no_live_pods:
        print("podlab-agent gc: no live pods named: that would release every address on "
              "the node; name the live pods, or pass --no-live-pods if none lives",
              file=sys.stderr)
        return 2
    fields = {k: getattr(args, k) for k in ("pod", "container", "pods", "every")
              if hasattr(args, k)}
    try:
        answer = protocol.call(args.socket, args.verb.replace("-", "_"), **fields)
    except (protocol.AgentError, protocol.AgentUnavailable) as e:
        print(f"podlab-agent {args.verb}: {e}", file=sys.stderr)
        return 1
    answer.pop("ok")
    print(json.dumps(answer, indent=2))
    return 0
