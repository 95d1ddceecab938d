"""`podlab kubeconfig | apply | get | probe | reach`: the lab's control plane from the shell.

Tables for people, `--json` for scripts; the lab is found by name (`--name`, default
`lab`), as for every other command. The official client (and pyroute2, for `probe` and
`reach`) is imported only by the commands that use it: it costs every other `podlab`
command half a second otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.names import dns1123_label
from podlab.kubeapi.resources import Resource
from podlab.lab.errors import LabError
from podlab.lab.reachability import (
    LEGEND,
    ExpectationError,
    Reachability,
    check_port,
    check_protocol,
    comparison,
    differences,
)
from podlab.lab.shell import add_name, find_lab, podlab_command
from podlab.lab.state import LabState
from podlab.lab.tables import table

if TYPE_CHECKING:
    from podlab.lab.kube.manifests import Applied, LabApi

WAIT_TIMEOUT = 120.0
T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kubeconfig", help="print the path of the lab's kubeconfig")
    add_name(p)
    p.set_defaults(func=cmd_kubeconfig)

    p = sub.add_parser("apply", help="apply a multi-document YAML manifest to the lab's API")
    add_name(p)
    p.add_argument("-f", "--file", required=True, help="a YAML file, or - for stdin")
    p.add_argument("--wait", action="store_true",
                   help="until its Pods and StatefulSets' pods run and its Deployments are "
                        "rolled out")
    p.add_argument("--json", action="store_true", help="what was applied, as JSON")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("get", help="list objects of a kind (pods, svc, sts, ...)")
    p.add_argument("kind", help="pods, svc, sts, deploy, ... (plural, singular or short)")
    add_name(p)
    p.add_argument("-n", "--namespace", help="one namespace (default: all)")
    p.add_argument("--json", action="store_true", help="the objects as the API returns them")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("probe", help="can pod FROM reach TO (a pod, svc/ns/name, or an IP)?")
    p.add_argument("source", metavar="FROM", help="a pod: ns/name")
    p.add_argument("target", metavar="TO", help="ns/name, svc/ns/name or an IP")
    add_name(p)
    p.add_argument("--port", type=int,
                   help="default: the Service's or pod's first port, 80 for an IP")
    p.add_argument("--proto", choices=("tcp", "udp"), default="tcp", help="default tcp")
    p.add_argument("--json", action="store_true", help="the result as one JSON object")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("reach", help="probe every ordered pair of pods on every port and "
                                     "protocol at once; print the truth tables")
    add_name(p)
    p.add_argument("--namespaces", default="x,y,z", type=_listed(_namespace),
                   help="comma-separated; their Running pods are probed (default x,y,z: "
                        "the upstream model's)")
    p.add_argument("--ports", default="80,81", type=_listed(lambda w: check_port(int(w))),
                   help="comma-separated (default 80,81)")
    p.add_argument("--protocols", default="tcp,udp", type=_listed(check_protocol),
                   help="comma-separated: tcp (a handshake), udp (an echo); default both")
    p.add_argument("--timeout", type=float, default=1.0,
                   help="seconds for every probe's answer, all probes running at once "
                        "(default 1)")
    p.add_argument("--expect", metavar="FILE",
                   help="a JSON expectation (docs/reach.md): print expected, observed and "
                        "their differences; exit 1 on any")
    p.add_argument("--json", action="store_true",
                   help='{"pairs": [{"from", "to", "port", "protocol", "connected"}]}, '
                        'with --expect a "differences" list too')
    p.set_defaults(func=cmd_reach)


def _state(name: str) -> LabState:
    state = find_lab(name)
    if not state.kube_api:
        raise LabError(f"lab {name!r} was started without a control plane; labs of "
                       "`podlab up` have one")
    return state


def _lab(name: str) -> tuple[LabState, LabApi]:
    from podlab.lab.kube.manifests import LabApi

    state = _state(name)
    return state, LabApi(state.kubeconfig)


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    print(_state(args.name).kubeconfig)  # in every `kubectl --kubeconfig $(…)`: no client
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from podlab.lab.kube.manifests import apply, load_documents

    _, api = _lab(args.name)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as e:
        raise LabError(f"cannot read {args.file}: {e.strerror}; -f takes a YAML file, or - "
                       "for stdin") from None
    docs = load_documents(text, args.file)

    def say(a: Applied) -> None:
        if not args.json:
            print(f"{a.kind.lower()}/{a.name} {a.action}")

    done = apply(api, docs, args.file, progress=say)
    if args.wait:
        _wait(api, _awaited(docs), args.name)
    if args.json:
        print(json.dumps([a.__dict__ for a in done]))
    return 0


def _awaited(docs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """What `--wait` waits for, as (kind, namespace, name): each Pod and StatefulSet ordinal
    Running, each Deployment rolled out."""
    awaited = []
    for d in docs:
        ns, name = d["metadata"].get("namespace", "default"), d["metadata"]["name"]
        if d["kind"] == "Pod":
            awaited.append(("pod", ns, name))
        elif d["kind"] == "StatefulSet":
            awaited += [("pod", ns, f"{name}-{i}")
                        for i in range(int(d["spec"].get("replicas", 1)))]
        elif d["kind"] == "Deployment":
            awaited.append(("deployment", ns, name))
    return awaited


def _wait(api: LabApi, awaited: list[tuple[str, str, str]], name: str) -> None:
    from podlab.lab.kube.manifests import rolled_out, running

    deadline = time.monotonic() + WAIT_TIMEOUT
    pending = set(awaited)
    while pending:
        pods = {ns: api.pods(ns) for kind, ns, _ in pending if kind == "pod"}
        pending = {(kind, ns, name) for kind, ns, name in pending if not (
            running(pods[ns], [name]) if kind == "pod"
            else rolled_out(api.get(BUILTIN.resources["deployments"], ns, name)))}
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError(f"not ready after {WAIT_TIMEOUT:.0f}s: "
                           f"{', '.join(f'{k} {n}/{p}' for k, n, p in sorted(pending))}; "
                           f"`podlab get pods --name {name}` and `podlab logs --name {name}` "
                           "say why")
        print(f" … waiting for {len(pending)} of {len(awaited)} to run", file=sys.stderr)
        time.sleep(0.5)  # polling the API for the pods' phase, with a deadline


def _resource(kind: str) -> Resource:
    for r in BUILTIN.resources.values():
        if kind.lower() in (r.name, r.kind.lower(), r.name.rstrip("s"), *r.short_names):
            return r
    raise LabError(f"unknown kind {kind!r}; one of: {', '.join(sorted(BUILTIN.resources))}")


def cmd_get(args: argparse.Namespace) -> int:
    """The server's own columns (`kubectl get -o wide`'s): a pod's IP and node are what a
    network lab is read for."""
    _, api = _lab(args.name)
    resource = _resource(args.kind)
    items = api.list(resource, args.namespace)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    columns = BUILTIN.strategy(resource.name).columns
    head = ["namespace"] if resource.namespaced else []
    print(table([*head, *(c.name for c in columns)],
                [[*([o["metadata"].get("namespace", "")] if head else []),
                  *(c.cell(o) for c in columns)] for o in items]))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from podlab.lab.kube.probe import ProbeResult, probe

    state, api = _lab(args.name)
    namespace, _, pod = args.source.partition("/")
    try:
        netns = state.pod(namespace, pod).netns
    except KeyError:
        raise LabError(f"FROM {args.source!r}: no such pod in lab {args.name!r}; its pods "
                       f"are in `podlab get pods --name {args.name}`") from None
    address, port = _target(api, args.target, args.port)
    ok, reason, who = probe(netns, address, port, args.proto)
    result = ProbeResult(args.source, args.target, address, port, args.proto, ok, reason, who)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        answer = f", answered by {who}" if who else ""
        print(f"{args.source} → {args.target} ({address}:{port}/{args.proto}): {reason}{answer}")
    return 0 if ok else 1


def _target(api: LabApi, target: str, port: int | None) -> tuple[str, int]:
    """An address and port for TO: a Service's ClusterIP and first port, a pod's IP and
    first container port, or an IP (port required, else 80)."""
    try:
        return str(ipaddress.ip_address(target)), port or 80
    except ValueError:
        pass
    parts = target.split("/")
    if len(parts) == 3 and parts[0] == "svc":
        svc = api.get(BUILTIN.resources["services"], parts[1], parts[2])
        ports = svc["spec"].get("ports") or [{"port": 80}]
        return str(svc["spec"]["clusterIP"]), port or int(ports[0]["port"])
    if len(parts) == 2:
        obj = api.get(BUILTIN.resources["pods"], parts[0], parts[1])
        ip = (obj.get("status") or {}).get("podIP")
        if not ip:
            raise LabError(f"TO {target}: the pod has no IP yet; `podlab apply --wait` "
                           "returns when it runs")
        declared = [p["containerPort"] for c in obj["spec"].get("containers", [])
                    for p in c.get("ports", [])]
        return str(ip), port or (int(declared[0]) if declared else 80)
    raise LabError(f"TO {target!r}: expected ns/name, svc/ns/name or an IP")


def _listed(check: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated words, each through `check`."""
    def parse(text: str) -> list[T]:
        try:
            return [check(word.strip()) for word in text.split(",")]
        except (ExpectationError, ValueError) as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return parse


def _namespace(word: str) -> str:
    if problems := dns1123_label(word):
        raise ValueError(f"{word!r} is no namespace: {problems[0]}")
    return word


def cmd_reach(args: argparse.Namespace) -> int:
    from podlab.lab.reach import lab_pods, probe_matrix

    expected = Reachability.load(args.expect) if args.expect else None
    state, api = _lab(args.name)
    pods = lab_pods(state, api, args.namespaces)
    if not pods:
        raise LabError(f"no Running pods in namespace(s) {', '.join(args.namespaces)} of lab "
                       f"{args.name!r}; the upstream model: `{sys.executable} -m "
                       f"podlab.lab.netpol_model | {podlab_command()} apply --name {args.name} "
                       "-f - --wait`")
    names = [p.name for p in pods]
    if expected and (unmatched := expected.unmatched(names)):
        raise ExpectationError(
            f"{args.expect}: pairs name pods that namespace(s) {', '.join(args.namespaces)} "
            f"do not have: {', '.join(f'{r.source} -> {r.target}' for r in unmatched)}; the "
            f"pods are in `podlab get pods --name {args.name}`")
    observed = probe_matrix(pods, args.ports, args.protocols, args.timeout)
    wrong = differences(expected, observed) if expected else []
    if args.json:
        print(json.dumps({**observed.to_json(), **(
            {"differences": [d.to_json() for d in wrong]} if expected else {})}))
    else:
        print(f"{LEGEND}\n")
        print(comparison(expected, observed) if expected else observed.render())
    return 1 if wrong else 0
