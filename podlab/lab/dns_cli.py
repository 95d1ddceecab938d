"""`podlab dns log|query`: the lab's lookups as each DNS server saw them, and a lookup made
from inside a pod with the wire queries it took.

Every DNS server of a lab (each node's node-local cache, each `coredns` pod) serves its
lookup log on a unix socket under `<run dir>/<lab>/dns/` (`podlab.dns.lookups`); this reads
them all, or one node's cache (`--node`), and keeps a pod's lookups (`--pod`)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from queue import Queue
from typing import Any

from podlab.lab.constants import DNS_LOG_DIR
from podlab.lab.errors import LabError
from podlab.lab.shell import add_name, find_lab
from podlab.lab.state import LabState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dns", help="the lab's DNS: each lookup, or one from a pod")
    verbs = p.add_subparsers(dest="verb", required=True)
    log = verbs.add_parser("log", help="each lookup as the client sent it: its pod, the "
                                       "names autopath tried and the one that hit, cache, "
                                       "upstream, rcode, latency")
    add_name(log)
    log.add_argument("--node", help="only this node's node-local cache")
    log.add_argument("--pod", help="only this pod's lookups (namespace/name)")
    log.add_argument("--follow", "-f", action="store_true", help="then each new one")
    log.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    log.set_defaults(func=cmd_log)
    query = verbs.add_parser("query", help="resolve a name from inside a pod (glibc's "
                                           "getaddrinfo; dig when a TYPE is given) and show "
                                           "the wire queries it took")
    query.add_argument("pod", help="namespace/name")
    query.add_argument("qname", metavar="NAME", help="the name, as a program in the pod asks")
    query.add_argument("qtype", metavar="TYPE", nargs="?", help="A, AAAA, SRV, PTR, ...")
    add_name(query)
    query.set_defaults(func=cmd_query)


def sockets(state: LabState, node: str | None = None) -> dict[str, Path]:
    """Each log's server (`nodelocal/n1`, `coredns/<pod>`) and its socket."""
    if node is not None:
        state.node(node)
    found = {}
    for path in sorted((state.dir / DNS_LOG_DIR).glob("*.sock")):
        kind, _, who = path.stem.partition("-")
        if node is None or (kind, who) == ("nodelocal", node):
            found[f"{kind}/{who}"] = path
    if not found:
        raise LabError(f"lab {state.name!r} serves no DNS lookup log"
                       f"{f' on node {node}' if node else ''}: is it up with DNS on "
                       f"(`podlab status --name {state.name}`)?")
    return found


def read(logs: dict[str, Path], after: dict[str, int] | None = None,
         follow: bool = False) -> Iterator[dict[str, Any]]:
    """Every lookup of `logs` (after each one's seq in `after`), each with its `server`;
    oldest first, or as they come when following."""
    from podlab.dns.lookups import read as read_one  # dnslib: not for `podlab --help`

    after = after or {}
    if not follow:
        rows = [{**row, "server": server} for server, path in logs.items()
                for row in _lines(read_one, path, after.get(server, 0), False, server)]
        yield from sorted(rows, key=lambda r: r["time"])
        return
    queue: Queue[dict[str, Any]] = Queue()

    def pump(server: str, path: Path) -> None:
        for row in _lines(read_one, path, after.get(server, 0), True, server):
            queue.put({**row, "server": server})

    for server, path in logs.items():
        threading.Thread(target=pump, args=(server, path), daemon=True).start()
    while True:
        yield queue.get()


def _lines(read_one: Any, path: Path, after: int, follow: bool, server: str
           ) -> Iterator[dict[str, Any]]:
    try:
        yield from read_one(str(path), after, follow)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # a server gone: a deleted coredns pod's socket, a cache restarting
    except OSError as e:
        print(f"({server}: {e.strerror or e})", file=sys.stderr)


def line(row: dict[str, Any]) -> str:
    """One lookup: when, who asked, what, and how it was answered."""
    at = datetime.fromtimestamp(row["time"]).strftime("%H:%M:%S.%f")[:-3]
    walk = ""
    if row.get("tried"):
        walk = " autopath " + " → ".join(
            f"{n} (hit)" if n == row.get("hit") else n for n in row["tried"])
    upstream = f" via {row['upstream']}" if row.get("upstream") else ""
    return (f"{at} {row['server']} {row.get('pod') or row['client']} {row['transport']} "
            f"{row['qtype']} {row['qname']} {row['rcode']} {row['ms']}ms "
            f"cache {row['cache']}{upstream}{walk}")


def cmd_log(args: argparse.Namespace) -> int:
    state = find_lab(args.name)
    try:
        logs = sockets(state, args.node)
    except KeyError:
        raise LabError(f"lab {args.name!r} has no node {args.node!r}") from None
    try:
        for row in read(logs, follow=args.follow):
            if args.pod and row.get("pod") != args.pod:
                continue
            print(json.dumps(row) if args.json else line(row), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def query(state: LabState, target: str, qname: str, qtype: str | None = None
          ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Resolve `qname` in pod `target` (`namespace/name`) as its programs do: glibc's
    getaddrinfo (`getent ahosts`), or dig for one `qtype`; what it printed, and the
    lookups the lab's DNS servers logged for the pod meanwhile (the wire queries)."""
    from podlab.lab.backends import backend  # pyroute2 on first use only

    namespace, _, name = target.partition("/")
    try:
        pod = state.pod(namespace, name)
    except KeyError:
        raise LabError(f"lab {state.name!r} has no pod {target!r}; its pods are in "
                       f"`podlab status --name {state.name}`") from None
    logs = sockets(state)
    before = {server: max((r["seq"] for r in read({server: path})), default=0)
              for server, path in logs.items()}
    argv = (["dig", "+search", "+noall", "+answer", qname, qtype] if qtype
            else ["getent", "ahosts", qname])
    proc = subprocess.run(backend(state.backend).pod_exec_argv(state.name, pod, argv),
                          capture_output=True, text=True, check=False, timeout=60)
    return proc, [r for r in read(logs, before) if r.get("pod") == target]


def show_query(proc: subprocess.CompletedProcess[str], sent: list[dict[str, Any]]) -> None:
    print(proc.stdout.rstrip() or f"(no answer: {' '.join(proc.args[-3:])} exited "
          f"{proc.returncode})")
    print(f"\n{len(sent)} quer{'y' if len(sent) == 1 else 'ies'} on the wire:")
    for row in sent:
        print("  " + line(row))


def cmd_query(args: argparse.Namespace) -> int:
    proc, sent = query(find_lab(args.name), args.pod, args.qname, args.qtype)
    show_query(proc, sent)
    return proc.returncode
