"""`podlab flows`: the NetworkPolicy flow log of a lab's nodes, as `hubble observe` shows
it: each drop (and each sampled allow) with its 5-tuple, direction, both pods and their
identities, the reason and the policies that isolate the pod. Each node's agent keeps its
own log (`flows` on its socket); without --node every node is asked. --follow asks each
agent again from the last sequence number it answered, until interrupted."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from podlab.cni import protocol
from podlab.lab.errors import LabError
from podlab.lab.shell import add_name, find_lab, runnable
from podlab.lab.state import LabState, NodeState

FOLLOW_WAIT = 2.0  # seconds an agent holds a --follow request open for a new flow
RETRY = 1.0  # seconds before a follower asks an agent that did not answer (restarting) again
Record = dict[str, Any]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("flows", help="NetworkPolicy drops (and sampled allows) with their "
                                     "reason, as hubble observe")
    add_name(p)
    p.add_argument("--node", help="only this node's flows (default: every node)")
    p.add_argument("--pod", metavar="NS/POD", help="only flows from or to this pod")
    p.add_argument("--verdict", choices=("dropped", "allowed"), help="only these")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new flows until interrupted (Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one JSON object per flow and line")
    p.set_defaults(func=cmd_flows)


def enforcing_nodes(state: LabState, node: str | None) -> list[NodeState]:
    """The nodes asked; a node whose agent serves no eBPF is an error, as it has no flows."""
    try:
        nodes = [state.node(node)] if node else state.nodes
    except KeyError as e:
        raise LabError(f"{e.args[0]}; its nodes are in `podlab status --name {state.name}`"
                       ) from None
    for n in nodes:
        if n.service_proxy != "ebpf":
            raise LabError(f"node {n.name} of lab {state.name!r} serves Services by "
                           f"{n.service_proxy or 'nothing'} and enforces no NetworkPolicy, so "
                           f"it has no flows; a lab that enforces it: `podlab up --name NEW "
                           "--service-proxy ebpf`")
    return nodes


class Cursor:
    """Where one agent's log was read up to; a new epoch (a restarted agent) starts over."""

    def __init__(self, node: NodeState, args: argparse.Namespace) -> None:
        self.node, self.lab = node, args.name
        self.filters = {k: v for k, v in (("pod", args.pod), ("verdict", args.verdict)) if v}
        self.epoch, self.after = "", 0

    def read(self, wait: float = 0.0) -> list[Record]:
        """The next flows (at most one answer's), or LabError if the agent is away."""
        try:
            answer = protocol.call(self.node.agent_socket, "flows", timeout=wait + 10,
                                   after=self.after, wait=wait,
                                   **self.filters)
        except (protocol.AgentUnavailable, protocol.AgentError) as e:
            raise LabError(f"cannot read the flows of node {self.node.name}: {e}; its "
                           f"agent's state: `podlab status --name {self.lab}`") from None
        if answer["epoch"] != self.epoch and self.after:
            self.epoch, self.after = answer["epoch"], 0  # the agent restarted: from its start
            return self.read(wait)
        self.epoch, self.after = answer["epoch"], int(answer["last"])
        flows: list[Record] = answer["flows"]
        return flows

    def drain(self) -> Iterator[Record]:
        while flows := self.read():
            yield from flows


def _follow(cursor: Cursor, out: queue.Queue[Record]) -> None:
    while True:
        try:
            flows = cursor.read(FOLLOW_WAIT)
        except LabError:  # the agent restarts; its successor's log is read from its start
            time.sleep(RETRY)  # a backoff between attempts, not a wait for an event
            continue
        for record in flows:
            out.put(record)


def _peer(peer: Record) -> str:
    return f"{peer['pod'] or peer['ip']} (identity {peer['identity']})"


def line(record: Record) -> str:
    """One flow as a line, in `hubble observe`'s order."""
    when = datetime.fromisoformat(record["time"]).strftime("%b %e %H:%M:%S.%f")[:-3]
    proto = str(record["protocol"])
    port = f":{record['dst']['port']}/{proto}" if proto in ("tcp", "udp") else proto
    policies = ", ".join(record["policies"]) or "none"
    return (f"{when} {record['node']}: {_peer(record['src'])} -> {_peer(record['dst'])} "
            f"{port} {record['direction']} {record['verdict'].upper()} {record['reason']} "
            f"(policies: {policies})")


def show(record: Record, as_json: bool) -> None:
    print(json.dumps(record) if as_json else line(record), flush=True)


def cmd_flows(args: argparse.Namespace) -> int:
    cursors = [Cursor(n, args) for n in enforcing_nodes(find_lab(args.name), args.node)]
    found = sorted((r for c in cursors for r in c.drain()), key=lambda r: r["time"])
    for record in found:
        show(record, args.json)
    if not args.follow:
        if not found:
            print(runnable(f"no flows{' of ' + args.pod if args.pod else ''}: every drop is "
                           f"one, an allowed connection only when sampled (`podlab agent "
                           f"allow-sampling N --name {args.name} --node NODE`)"),
                  file=sys.stderr)
        return 0
    out: queue.Queue[Record] = queue.Queue()
    for cursor in cursors:
        threading.Thread(target=_follow, args=(cursor, out), daemon=True).start()
    while True:  # until Ctrl-C, which podlab's main answers with 130 and nothing printed
        show(out.get(), args.json)
