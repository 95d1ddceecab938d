"""`podlab`: bring labs up and down, look inside them, and run the demo."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from podlab.lab import bpf_cli, check_cli, cloud_cli, dns_cli, flows_cli
from podlab.lab.constants import DEFAULT_LAB
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.kube import cli as kube_cli
from podlab.lab.process import owner_alive, wait_gone
from podlab.lab.service_proxy import SERVICE_PROXIES
from podlab.lab.shell import add_name, find_lab, new_lab_name, runnable
from podlab.lab.state import LabState, NodeState, run_dir
from podlab.lab.tables import table

if TYPE_CHECKING:
    from podlab.fakecloud import Topology

UP_TIMEOUT = 120.0
DOWN_TIMEOUT = 60.0
SIGPIPE_EXIT = 128 + signal.SIGPIPE  # what a shell reports for a program a closed pipe ended

# Commands registered only when they run: their modules import the cloud's models and
# server, the conformance suite's lab, and (the agent's, another package's CLI) whatever it
# comes to need; `--help` and `status` paid a second for them. `--help` lists them from
# here (a unit test keeps this text the modules' own).
LAZY_COMMANDS = {
    "agent": ("podlab.cni.cli", "the node agent: its ENI/IP pool and socket"),
    "cni-test": ("podlab.lab.conformance.cli", "run the CNI conformance suite against a plugin"),
    "fakecloud": ("podlab.fakecloud.cli", "the emulated Alibaba Cloud OpenAPI"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # so that a closed pipe shows here, not as a traceback at exit
    except BrokenPipeError:  # `podlab status --json | head -c1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_EXIT
    except LabError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from podlab.fakecloud import TopologyError  # on this path only: it loads the SDK

        if not isinstance(e, TopologyError):
            raise
        return _fail(f"{e}; see docs/topology.md and `podlab up --help`")
    return code


def _fail(message: str) -> int:
    print(f"podlab: {runnable(message)}", file=sys.stderr)
    return 1


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line; options go before or after positional arguments, except that
    what follows `exec ... --` is the command's, untouched."""
    words, command = _split_exec_command(list(argv))
    args = _parser(load=words[:1]).parse_args(words)
    if command:
        args.cmd = [*args.cmd, *command]
    return args


def _split_exec_command(words: list[str]) -> tuple[list[str], list[str]]:
    """`exec`'s command after `--`, kept from argparse, which would read its options (and,
    with a REMAINDER argument, take `--name` after TARGET as part of the command)."""
    if words[:1] != ["exec"] or "--" not in words:
        return words, []
    i = words.index("--")
    return words[:i], words[i + 1:]


def _parser(load: Collection[str] = ()) -> argparse.ArgumentParser:
    """Every command; of LAZY_COMMANDS, those in `load` are registered, the rest only listed."""
    p = argparse.ArgumentParser(prog="podlab", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    _register_up(sub)

    status = sub.add_parser("status", help="show a lab's nodes (and pods)")
    add_name(status)
    status.add_argument("--json", action="store_true", help="the whole state, for scripts")
    status.set_defaults(func=cmd_status)

    ex = sub.add_parser("exec", help="run a command on a node or in a pod (ns/pod)",
                        usage="%(prog)s [--name NAME] TARGET -- CMD ...")
    add_name(ex)
    ex.add_argument("target", help="a node (n1) or a pod (namespace/name)")
    ex.add_argument("cmd", nargs="*", help="the command to run; after --, its options are its own")
    ex.set_defaults(func=cmd_exec)

    logs = sub.add_parser("logs", help="print a lab's event log and supervisor log")
    add_name(logs)
    logs.add_argument("--json", action="store_true", help="the raw JSON lines")
    logs.set_defaults(func=cmd_logs)

    down = sub.add_parser("down", help="tear a lab down")
    group = down.add_mutually_exclusive_group()
    group.add_argument("--name", default=DEFAULT_LAB, help=f"the lab (default {DEFAULT_LAB})")
    group.add_argument("--all", action="store_true",
                       help="take down every lab on this machine, whoever started it: lists "
                            "them, then asks (without a terminal to ask on, needs --yes)")
    down.add_argument("--yes", action="store_true", help="with --all: do not ask")
    down.set_defaults(func=cmd_down)

    clean = sub.add_parser("clean", help="remove leftovers of labs whose owner died")
    clean.add_argument("--name", help="only this lab (default: every lab whose owner died)")
    clean.add_argument("--dry-run", action="store_true",
                       help="list what would be removed, and why, and remove nothing")
    clean.set_defaults(func=cmd_clean)

    doctor = sub.add_parser("doctor", help="which capabilities this machine has")
    doctor.set_defaults(func=cmd_doctor)

    kube_cli.register(sub)
    cloud_cli.register(sub)
    bpf_cli.register(sub)
    flows_cli.register(sub)
    check_cli.register(sub)
    dns_cli.register(sub)
    for name, (module, text) in LAZY_COMMANDS.items():
        if name not in load:
            sub.add_parser(name, help=text)
        elif name == "agent":
            _register_agent(sub)
        else:
            importlib.import_module(module).register(sub)

    demo = sub.add_parser("demo", help="the showcase: a 2-node lab, end to end")
    demo.set_defaults(func=cmd_demo)
    return p


def _register_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="bring a lab up and leave it running")
    add_name(up, new=True)
    up.add_argument("--topology", metavar="FILE", help="topology YAML (see docs/topology.md)")
    up.add_argument("--nodes", type=int, default=2, help="nodes of the default topology")
    up.add_argument("--region", default="cn-hangzhou", help="region of the default topology")
    up.add_argument("--vpc-cidr", help="the VPC's CIDR (default 192.168.0.0/16)")
    up.add_argument("--vswitch", action="append", default=[], metavar="id=ID,zone=Z,cidr=C",
                    help="a vSwitch instead of the default two (repeatable)")
    up.add_argument("--node", action="append", default=[], metavar="name=N,type=T,vswitch=V",
                    help="a node instead of --nodes' (repeatable)")
    up.add_argument("--service-proxy", choices=SERVICE_PROXIES,
                    help="what serves Services: ebpf (the default where the kernel allows "
                         "it, else iptables) or kube-proxy's iptables or nftables rules")
    up.add_argument("--seed", type=int, metavar="N",
                    help="seed of the cloud's random fault draws, so a failure replays "
                         "(default: the topology's seed:, else 0)")
    up.add_argument("--resume", metavar="NAME", type=new_lab_name,
                    help="bring back the lab NAME, whose supervisor died, as it was (its "
                         "nodes, pods, API objects and cloud); other options do not apply")
    up.set_defaults(func=cmd_up)


def _register_agent(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`podlab agent`, whose verbs that ask a running agent find its socket in a lab's state
    (--name, --node) unless given --socket: the agent's own CLI knows nothing of labs."""
    from podlab.cni import cli as agent_cli

    for verb in agent_cli.register(sub):
        add_name(verb)
        verb.add_argument("--node", default="n1",
                          help="the node whose agent to ask (default n1), unless --socket")
        verb.set_defaults(socket=None, func=functools.partial(_with_lab_socket,
                                                              verb.get_default("func")))


def _with_lab_socket(call: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    if args.socket is None:
        try:
            args.socket = find_lab(args.name).node(args.node).agent_socket
        except KeyError as e:
            status = f"`podlab status --name {args.name}`"
            raise LabError(f"{e.args[0]}; its nodes are in {status}") from None
    return call(args)


# -- up ------------------------------------------------------------------------------


def topology_from_args(args: argparse.Namespace) -> Topology:
    """A topology file, or the default topology with what the flags override."""
    from podlab.fakecloud import Topology, default_topology, load_topology

    if args.topology:
        return load_topology(args.topology).configured(seed=args.seed)
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
    if args.seed is not None:
        data["seed"] = args.seed
    return Topology.from_dict(data)


def _pairs(text: str, flag: str) -> dict[str, str]:
    from podlab.fakecloud import TopologyError

    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise TopologyError(flag, f"{text!r}: expected key=value,key=value")
        pairs[key] = value
    return pairs


def cmd_up(args: argparse.Namespace) -> int:
    from podlab.lab import ownership  # here, not at the top: it imports pyroute2

    if args.resume:
        from podlab.lab.resume import dead_lab

        dead_lab(args.resume)  # at once, what to run instead of a resume that cannot be
        args.name, options, world = args.resume, ["--resume"], ""
    else:
        options = ["--service-proxy", args.service_proxy] if args.service_proxy else []
        world = json.dumps(topology_from_args(args).to_dict())
    env = {**os.environ, ownership.LAB_ENV: args.name}
    proc = subprocess.Popen(
        [sys.executable, "-m", "podlab.lab.supervisor", "--name", args.name, *options],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, start_new_session=True,
    )
    assert proc.stdin
    assert proc.stdout
    assert proc.stderr
    proc.stdin.write(world)
    proc.stdin.close()
    print(f"{'Resuming' if args.resume else 'Bringing up'} lab {args.name!r} (supervisor pid "
          f"{proc.pid}) ...", file=sys.stderr)
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            proc.kill()
            raise LabError(f"lab {args.name!r} did not come up in {UP_TIMEOUT:.0f}s, so "
                           f"podlab killed its supervisor: {_supervisor_gone(args.name, proc)}")
        line = proc.stdout.readline()
        if not line:
            raise LabError(_supervisor_gone(args.name, proc))
        msg = json.loads(line)
        if "progress" in msg:
            print(f" ✓ {msg['progress']}", file=sys.stderr)
        elif "error" in msg:
            raise LabError(msg["error"])
        elif "ready" in msg:
            state = LabState.load(args.name)
            print(_nodes_table(state))
            print(runnable(f"\nLab {args.name!r} is up (supervisor pid {proc.pid}). "
                           f"Try: `podlab exec --name {args.name} n1 -- ip addr`"),
                  file=sys.stderr)
            return 0


def _supervisor_gone(name: str, proc: subprocess.Popen[str]) -> str:
    """What became of a supervisor that ended before its lab was up, and what to do next."""
    code = proc.wait()
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
    assert proc.stderr
    said = proc.stderr.read().strip()[-2000:]
    return (f"the supervisor of lab {name!r} (pid {proc.pid}) {how} before the lab was up"
            + (f"; it said:\n{said}" if said else "")
            + f"\nWhat it made stays until `podlab clean --name {name}` removes it.")


# -- looking at labs ------------------------------------------------------------------


def _nodes_table(state: LabState) -> str:
    return table(
        ["name", "instance id", "instance type", "zone", "vswitch", "primary ip", "mac"],
        [[n.name, n.instance_id, n.instance_type, n.zone, n.vswitch, n.primary_ip, n.mac]
         for n in state.nodes],
    )


def cmd_status(args: argparse.Namespace) -> int:
    state = find_lab(args.name)
    cloud = _cloud_settings(state)
    if args.json:
        print(json.dumps({**state.summary(), **cloud}, indent=2))
        return 0
    alive = "running" if owner_alive(state.owner) else runnable(
        f"owner dead: `podlab up --resume {state.name}` brings it back, `podlab clean` "
        "removes it")
    settings = "".join(f", {key.replace('_', ' ')} {value}{'' if key == 'seed' else 's'}"
                       for key, value in cloud.items())
    print(f"lab {state.name}: {state.status}, {alive}, owner pid {state.owner.pid}{settings}\n")
    print(_nodes_table(state))
    if any(n.agent_state for n in state.nodes):
        print()
        print(table(["node", "agent", "restarts", "last exit"],
                    [[n.name, n.agent_state, str(n.agent_restarts), _last_exit(n)]
                     for n in state.nodes]))
    if state.pods:
        print()
        print(table(["namespace", "name", "node", "ip", "state", "sandbox restarts",
                     "last problem", "netns"],
                    [[p.namespace, p.name, p.node, p.ip, p.health, str(p.sandbox_restarts),
                      p.last_problem, p.netns] for p in state.pods]))
    if state.kube_api:
        print(f"\nKubernetes API {state.kube_api}: kubectl --kubeconfig {state.kubeconfig}")
    return 0


def _cloud_settings(state: LabState) -> dict[str, object]:
    """The seed of the lab's fault draws, and the cloud's timing where it is not instant:
    what a failure needs to replay."""
    cloud = state.topology.get("cloud", {})
    return {"seed": state.topology.get("seed", 0),
            **{key: cloud[key] for key in ("attach_delay", "metadata_lag") if cloud.get(key)}}


def _last_exit(node: NodeState) -> str:
    if node.agent_last_exit is None:
        return ""
    code = node.agent_last_exit
    how = signal.Signals(-code).name if code < 0 else f"exit {code}"
    return f"{how} at {node.agent_last_exit_at}"


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.cmd:
        raise LabError(f"nothing to run: `podlab exec --name {args.name} {args.target} -- CMD ...`")
    from podlab.lab.backends import target_argv  # here, not at the top: it imports pyroute2

    try:
        argv = target_argv(find_lab(args.name), args.target, args.cmd)
    except KeyError as e:
        raise LabError(f"{e.args[0]}; its nodes and pods are in "
                       f"`podlab status --name {args.name}`") from None
    os.execvp(argv[0], argv)


def cmd_logs(args: argparse.Namespace) -> int:
    state_dir = run_dir() / args.name
    if not state_dir.exists():
        find_lab(args.name)
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
    from podlab.lab import ownership  # here, not at the top: it imports pyroute2

    if owner_alive(state.owner):
        if state.owner_kind != "supervisor":
            raise LabError(f"lab {state.name!r} belongs to process {state.owner.pid} "
                           "(not `podlab up`); stop that process to tear it down")
        os.kill(state.owner.pid, signal.SIGTERM)
        if not wait_gone(state.owner.pid, DOWN_TIMEOUT):
            raise LabError(f"supervisor {state.owner.pid} of lab {state.name!r} did not stop")
    return ownership.remove_lab(state.name)


def cmd_down(args: argparse.Namespace) -> int:
    if args.all:
        states = LabState.all()
        if not states:
            print("no labs on this machine")
            return 0
        print(table(["lab", "status", "owner"],
                    [[s.name, s.status, f"pid {s.owner.pid}"
                      + ("" if owner_alive(s.owner) else " (dead)")] for s in states]))
        _confirm(f"`podlab down --all` takes down these {len(states)} lab(s).", args.yes)
    else:
        states = [find_lab(args.name)]
    failed = []
    for state in states:  # one lab that will not go down does not keep the others up
        try:
            _down(state)
        except LabError as e:
            failed.append(f"{state.name}: {e}")
            continue
        print(f"lab {state.name!r} is down")
    if failed:
        raise LabError("some labs are not down: " + "; ".join(failed))
    return 0


def _confirm(what: str, yes: bool) -> None:
    """Go on with --yes, or when the user at the terminal says so."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise LabError(f"{what} stdin is not a terminal to ask on: add --yes to confirm")
    if input(f"{what} Go on? [y/N] ").strip().lower() not in ("y", "yes"):
        raise LabError("nothing was taken down")


def cmd_clean(args: argparse.Namespace) -> int:
    from podlab.lab import ownership  # here, not at the top: it imports pyroute2

    if args.name and (live := ownership.live_labs().get(args.name)):
        raise LabError(f"lab {args.name!r} runs (owner pid {live.owner.pid}); clean removes "
                       f"only labs whose owner died: `podlab down --name {args.name}`")
    count = 0
    for lab in ownership.dead_labs(args.name):
        print(f"lab {lab.name}: {lab.why}")
        items = ownership.leftovers(lab.name) if args.dry_run else ownership.remove_dead(lab.name)
        for item in items:
            print(f"  {'would remove' if args.dry_run else 'removed'} {item}")
        count += len(items)
    if not count:
        print("clean: nothing to remove")
    else:
        print(f"clean: {count} leftover(s) " + ("would be removed" if args.dry_run else "removed"))
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    from podlab.lab import capabilities

    rows = [[name, "yes" if why is None else f"no: {why}"]
            for name, why in capabilities.report().items()]
    print(table(["capability", "available"], rows))
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from podlab.lab.demo import run_demo

    return run_demo()
