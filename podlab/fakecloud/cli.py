"""`podlab fakecloud serve`: the emulated cloud as a standalone HTTP endpoint."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys

from podlab.fakecloud.models import Cloud
from podlab.fakecloud.server import cloud_server
from podlab.fakecloud.topology import default_topology, load_topology
from podlab.fakecloud.wire import DEFAULT_CREDENTIALS, Endpoint


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fakecloud", help="the emulated Alibaba Cloud OpenAPI")
    verbs = p.add_subparsers(required=True, metavar="VERB")
    serve = verbs.add_parser("serve", help="serve ECS/VPC OpenAPI over HTTP until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    (key, secret), = DEFAULT_CREDENTIALS.items()
    serve.add_argument("--access-key-id", default=key, help="the one credential accepted")
    serve.add_argument("--access-key-secret", default=secret, help="its secret")
    serve.add_argument("--admin-token", default=None, metavar="TOKEN",
                       help="bearer token of the /_podlab/ admin endpoints (default: random, "
                            "printed at start)")
    serve.add_argument("--topology", metavar="FILE",
                       help="the world to serve (default: 2 instances in 2 zones)")
    serve.add_argument("--attach-delay", type=float, metavar="SECONDS",
                       help="how long an attach or detach takes to settle (default: the "
                            "topology's cloud.attach_delay, else 0)")
    serve.add_argument("--state", metavar="FILE",
                       help="keep the cloud's state in this SQLite file and continue from "
                            "it when it exists (default: in memory only)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before any thread starts
    topology = load_topology(args.topology) if args.topology else default_topology()
    delay = topology.attach_delay if args.attach_delay is None else args.attach_delay
    endpoint = Endpoint(Cloud(topology, attach_delay=delay, state=args.state),
                        {args.access_key_id: args.access_key_secret})
    token = args.admin_token or secrets.token_urlsafe(16)
    server = cloud_server(endpoint, args.host, args.port, admin_token=token).start()
    print(f"fakecloud: serving {topology.region} ({len(topology.nodes)} instances, "
          f"{len(topology.vswitches)} vSwitches) at {server.url}; admin: curl -H "
          f"'Authorization: Bearer {token}' {server.url}/_podlab/state", file=sys.stderr,
          flush=True)
    signal.sigwait(stop)
    server.stop()
    return 0
