"""`podlab`: bring labs up and down, look inside them, and run the demo."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from podlab.cni import cli as agent_cli
from podlab.fakecloud import Topology, TopologyError, default_topology, load_topology
from podlab.fakecloud import cli as fakecloud_cli
from podlab.lab import capabilities, ownership
from podlab.lab.conformance import cli as conformance_cli
from podlab.lab.demo import run_demo
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.kube import cli as kube_cli
from podlab.lab.lab import DEFAULT_LAB
from podlab.lab.process import owner_alive, wait_gone
from podlab.lab.state import LabState, run_dir
from podlab.lab.tables import table

UP_TIMEOUT = 120.0
DOWN_TIMEOUT = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (LabError, TopologyError) as e:
        print(f"podlab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podlab", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="bring a lab up and leave it running")
    _name(up)
    up.add_argument("--topology", metavar="FILE", help="topology YAML (see docs/topology.md)")
    up.add_argument("--nodes", type=int, default=2, help="nodes of the default topology")
    up.add_argument("--region", default="cn-hangzhou")
    up.add_argument("--vpc-cidr")
    up.add_argument("--vswitch", action="append", default=[], metavar="id=ID,zone=Z,cidr=C")
    up.add_argument("--node", action="append", default=[], metavar="name=N,type=T,vswitch=V")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show a lab's nodes (and pods)")
    _name(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    ex = sub.add_parser("exec", help="run a command on a node or in a pod (ns/pod)")
    _name(ex)
    ex.add_argument("target")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    logs = sub.add_parser("logs", help="print a lab's event log and supervisor log")
    _name(logs)
    logs.add_argument("--json", action="store_true", help="the raw JSON lines")
    logs.set_defaults(func=cmd_logs)

    down = sub.add_parser("down", help="tear a lab down")
    group = down.add_mutually_exclusive_group()
    group.add_argument("--name", default=DEFAULT_LAB)
    group.add_argument("--all", action="store_true")
    down.set_defaults(func=cmd_down)

    clean = sub.add_parser("clean", help="remove leftovers of labs whose owner died")
    clean.set_defaults(func=cmd_clean)

    doctor = sub.add_parser("doctor", help="which capabilities this machine has")
    doctor.set_defaults(func=cmd_doctor)

    agent_cli.register(sub)
    conformance_cli.register(sub)
    kube_cli.register(sub)
    fakecloud_cli.register(sub)

    demo = sub.add_parser("demo", help="the showcase: a 2-node lab, end to end")
    demo.set_defaults(func=lambda _args: run_demo())
    return p


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=DEFAULT_LAB, help=f"lab name (default {DEFAULT_LAB})")


# -- up ------------------------------------------------------------------------------


def topology_from_args(args: argparse.Namespace) -> Topology:
    """A topology file, or the default topology with what the flags override."""
    if args.topology:
        return load_topology(args.topology)
    data = default_topology(args.nodes, args.region).to_dict()
    if args.vpc_cidr:
        data["vpc"] = {"cidr": args.vpc_cidr}
    if args.vswitch:
        data.pop("zones")
        data["vswitches"] = [_pairs(v, "--vswitch") for v in args.vswitch]
    if args.node:
        renames = {"type": "instance_type"}
        data["nodes"] = [{renames.get(k, k): v for k, v in _pairs(n, "--node").items()}
                         for n in args.node]
    else:
        ids = [v["id"] for v in data["vswitches"]]
        data["nodes"] = [{"name": n["name"], "instance_type": n["instance_type"],
                          "vswitch": ids[i % len(ids)]} for i, n in enumerate(data["nodes"])]
    return Topology.from_dict(data)


def _pairs(text: str, flag: str) -> dict[str, str]:
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise TopologyError(flag, f"{text!r}: expected key=value,key=value")
        pairs[key] = value
    return pairs


def cmd_up(args: argparse.Namespace) -> int:
    topology = topology_from_args(args)
    env = {**os.environ, ownership.LAB_ENV: args.name}
    proc = subprocess.Popen(
        [sys.executable, "-m", "podlab.lab.supervisor", "--name", args.name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, start_new_session=True,
    )
    assert proc.stdin
    assert proc.stdout
    assert proc.stderr
    proc.stdin.write(json.dumps(topology.to_dict()))
    proc.stdin.close()
    print(f"Bringing up lab {args.name!r} ...", file=sys.stderr)
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        line = proc.stdout.readline() if ready else ""
        if not line:
            break
        msg = json.loads(line)
        if "progress" in msg:
            print(f" ✓ {msg['progress']}", file=sys.stderr)
        elif "error" in msg:
            raise LabError(msg["error"])
        elif "ready" in msg:
            state = LabState.load(args.name)
            print(_nodes_table(state))
            print(f"\nLab {args.name!r} is up (supervisor pid {proc.pid}). "
                  f"Try: podlab exec --name {args.name} n1 -- ip addr", file=sys.stderr)
            return 0
    proc.kill()
    raise LabError(f"lab {args.name!r} did not come up in time:\n{proc.stderr.read()}")


# -- looking at labs ------------------------------------------------------------------


def _load(name: str) -> LabState:
    try:
        return LabState.load(name)
    except FileNotFoundError:
        have = ", ".join(s.name for s in LabState.all()) or "none"
        raise LabError(f"no lab named {name!r} (labs: {have}); start one with `podlab up`") \
            from None


def _nodes_table(state: LabState) -> str:
    return table(
        ["name", "instance id", "instance type", "zone", "vswitch", "primary ip", "mac"],
        [[n.name, n.instance_id, n.instance_type, n.zone, n.vswitch, n.primary_ip, n.mac]
         for n in state.nodes],
    )


def cmd_status(args: argparse.Namespace) -> int:
    state = _load(args.name)
    if args.json:
        print(json.dumps(state.summary(), indent=2))
        return 0
    alive = "running" if owner_alive(state.owner) else "owner dead: run `podlab clean`"
    print(f"lab {state.name}: {state.status}, {alive}, owner pid {state.owner.pid}\n")
    print(_nodes_table(state))
    if state.pods:
        print()
        print(table(["namespace", "name", "node", "ip", "netns"],
                    [[p.namespace, p.name, p.node, p.ip, p.netns] for p in state.pods]))
    if state.kube_api:
        print(f"\nKubernetes API {state.kube_api}: kubectl --kubeconfig {state.kubeconfig}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise LabError("nothing to run: podlab exec TARGET -- CMD ...")
    try:
        ns = _load(args.name).target_netns(args.target)
    except KeyError as e:
        raise LabError(str(e.args[0])) from None
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


def cmd_logs(args: argparse.Namespace) -> int:
    state_dir = run_dir() / args.name
    if not state_dir.exists():
        _load(args.name)
    for event in EventLog(state_dir / "events.jsonl").read():
        if args.json:
            print(json.dumps(event))
        else:
            detail = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("ts", "event"))
            print(f"{event['ts']}  {event['event']:<18} {detail}")
    log = state_dir / "supervisor.log"
    if log.exists() and not args.json:
        print(log.read_text(), end="")
    return 0


# -- tearing down ---------------------------------------------------------------------


def _down(state: LabState) -> list[str]:
    if owner_alive(state.owner):
        if state.owner_kind != "supervisor":
            raise LabError(f"lab {state.name!r} belongs to process {state.owner.pid} "
                           "(not `podlab up`); stop that process to tear it down")
        os.kill(state.owner.pid, signal.SIGTERM)
        if not wait_gone(state.owner.pid, DOWN_TIMEOUT):
            raise LabError(f"supervisor {state.owner.pid} of lab {state.name!r} did not stop")
    return ownership.remove_lab(state.name)


def cmd_down(args: argparse.Namespace) -> int:
    states = LabState.all() if args.all else [_load(args.name)]
    for state in states:
        _down(state)
        print(f"lab {state.name!r} is down")
    return 0


def cmd_clean(_args: argparse.Namespace) -> int:
    removed = ownership.clean()
    for item in removed:
        print(f"removed {item}")
    print(f"clean: {len(removed)} leftover(s) removed" if removed else "clean: nothing to remove")
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    rows = [[name, "yes" if why is None else f"no: {why}"]
            for name, why in capabilities.report().items()]
    print(table(["capability", "available"], rows))
    return 0
