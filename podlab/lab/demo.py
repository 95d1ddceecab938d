"""`podlab demo` (`make demo`): the showcase, grown by each capability that lands."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podlab.cni import protocol
from podlab.fakecloud import default_topology
from podlab.lab.dns_cli import query, show_query
from podlab.lab.errors import LabError
from podlab.lab.flows_cli import line
from podlab.lab.kube.manifests import LabApi, apply, load_documents, running
from podlab.lab.kube.probe import probe
from podlab.lab.lab import Lab
from podlab.lab.ownership import leftovers
from podlab.lab.tables import table

DEMO = "demo"
EXAMPLES = Path(__file__).parents[2] / "examples"
EXAMPLE = EXAMPLES / "web.yaml"
POLICY = EXAMPLES / "netpol.yaml"
# Other labs and tests' namespaces may come and go while the demo runs (CI runs it beside
# the tests): of the netns, only the demo's own names count; of the root's links, all but
# other labs' management links.
_OTHER_LABS = re.compile(rf"pl-(?!{DEMO}\b)")


def _host_snapshot() -> list[str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    netns = [line for line in run("ip", "netns", "list").splitlines()
             if line.startswith(f"podlab-{DEMO}-")]
    links = [re.sub(r"^\d+: ", "", line) for line in run("ip", "-o", "link", "show").splitlines()
             if not _OTHER_LABS.search(line)]
    return netns + links


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _wait(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)  # polling the lab's API, with a deadline


def _matrix(lab: Lab, api: LabApi, pods: dict[str, dict[str, Any]]) -> None:
    """Every source (pods, then nodes) against every web pod and the Service."""
    svc = api.call("GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
    targets = [(n, p["status"]["podIP"], 8080) for n, p in sorted(pods.items())
               if n.startswith("web")] + [("svc/web", svc, 80)]
    sources = [(n, lab.state.pod("default", n).netns) for n in sorted(pods)] + \
        [(n.name, n.netns) for n in lab.state.nodes]
    rows = []
    for name, netns in sources:
        row = [name]
        for _target, ip, port in targets:
            ok, reason, who = probe(netns, ip, port, "tcp")
            row.append(("✓ " + who) if ok else f"✗ {reason}")
        rows.append(row)
    print(table(["from \\ to", *[f"{t} ({ip})" for t, ip, _ in targets]], rows))
    if any(cell.startswith("✗") for row in rows for cell in row[1:]):
        raise LabError("the connectivity matrix has failures")


def _policy(lab: Lab, api: LabApi, pods: dict[str, dict[str, Any]]) -> None:
    """examples/netpol.yaml in force: who reaches web-1 now, and why web-0 may not."""
    target = pods["web-1"]
    node = lab.state.node(target["spec"]["nodeName"])
    if node.service_proxy != "ebpf":
        print(" (skipped: this kernel has no eBPF Services here, so no NetworkPolicy)")
        return
    apply(api, load_documents(POLICY.read_text(), "examples/netpol.yaml"), "examples/netpol.yaml",
          progress=lambda a: print(f" {a.kind.lower()}/{a.name} {a.action}", flush=True))
    ip = target["status"]["podIP"]
    sources = {"client": True, "web-0": False, node.name: True}

    def netns(source: str) -> str:
        return (lab.state.pod("default", source).netns if source in pods
                else lab.state.node(source).netns)

    def seen() -> dict[str, bool]:
        return {s: probe(netns(s), ip, 8080, "tcp")[0] for s in sources}

    _wait("the policy enforced", lambda: seen() == sources, timeout=10)
    print(table(["from", "to web-1:8080", "as the policy says"],
                [[s, "connects" if ok else "dropped", "✓ allowed" if ok else "✓ denied"]
                 for s, ok in sources.items()]))
    drops = protocol.call(node.agent_socket, "flows", timeout=10, after=0, wait=0,
                          verdict="dropped", pod="default/web-1")["flows"]
    print(f"\n`podlab flows --name {DEMO} --verdict dropped` on {node.name}:")
    for record in drops[-1:]:
        print(f" {line(record)}")
    if not drops:
        raise LabError("the policy's drop is not in the flow log")


def _dns(lab: Lab) -> None:
    """A lookup of the lab's internet from the client, and the queries it took."""
    proc, sent = query(lab.state, "default/client", "aliyun.com")
    show_query(proc, sent)
    if proc.returncode != 0 or len(sent) != 2:
        raise LabError(f"the lookup from default/client took {len(sent)} queries, not 2")


def run_demo() -> int:
    before = _host_snapshot()
    _step("Bringing up a 2-node lab: VPC, vSwitches in two zones, the cloud, a node agent "
          "per node, the Kubernetes API and its controllers")
    lab = Lab(default_topology(nodes=2), name=DEMO).up(
        progress=lambda msg: print(f" ✓ {msg}", flush=True))
    try:
        _step("Nodes (ECS instances; the agent picked the datapath by probing the kernel)")
        print(table(
            ["name", "instance type", "zone", "vswitch", "primary ip", "datapath"],
            [[n.name, n.instance_type, n.zone, n.vswitch, n.primary_ip, n.datapath]
             for n in lab.state.nodes]))
        api = LabApi(lab.state.kubeconfig)
        _step(f"kubectl --kubeconfig {lab.state.kubeconfig} apply -f examples/web.yaml "
              "(here through the same API with podlab's client)")
        docs = load_documents(EXAMPLE.read_text(), "examples/web.yaml")
        apply(api, docs, "examples/web.yaml",
              progress=lambda a: print(f" {a.kind.lower()}/{a.name} {a.action}", flush=True))
        names = ["client", "web-0", "web-1", "web-2"]
        _wait("the pods Running", lambda: running(api.pods(), names))
        pods = api.pods()
        assert lab.cloud is not None
        eni_of = {ip: e.id for e in lab.cloud.model.all_enis() for ip in e.ips}
        print(table(["pod", "node", "ip", "eni (from the cloud)"],
                    [[n, p["spec"]["nodeName"], p["status"]["podIP"],
                      eni_of.get(p["status"]["podIP"], "?")] for n, p in sorted(pods.items())]))
        _step("Connectivity matrix (TCP; a web pod answers HTTP /hostname with its name)")
        _matrix(lab, api, pods)
        calls = collections.Counter(c.action for c in lab.cloud.endpoint.calls)
        print(f"\nThe agents took {sum(calls.values())} cloud calls: "
              + ", ".join(f"{n} {a}" for a, n in sorted(calls.items())))
        _step("A StatefulSet pod deleted comes back with the same IP (fixed IP)")
        ip, uid = pods["web-1"]["status"]["podIP"], pods["web-1"]["metadata"]["uid"]
        api.call("DELETE", "/api/v1/namespaces/default/pods/web-1")
        _wait("web-1 recreated", lambda: running(now := api.pods(), ["web-1"]) and
              now["web-1"]["metadata"]["uid"] != uid)
        again = api.pods()["web-1"]["status"]["podIP"]
        print(f" {'✓' if again == ip else '✗'} web-1: {ip} before, {again} after")
        if again != ip:
            raise LabError("web-1 came back with another IP")
        _step("A NetworkPolicy in eBPF on the pods' interfaces: the web pods take HTTP "
              "from the client only (examples/netpol.yaml)")
        _policy(lab, api, api.pods())
        _step("DNS from a pod: `podlab dns query default/client aliyun.com`, glibc's lookup "
              "with the cluster's search path and ndots:5, through the node-local cache, "
              "which walks the search path for the pod (autopath): 2 queries where 8 were")
        _dns(lab)
        _step("Tearing down")
    finally:
        lab.down()
    after = _host_snapshot()
    if after != before or leftovers(DEMO):
        print(f"The host is NOT as it was: {leftovers(DEMO)} "
              f"{sorted(set(after) ^ set(before))}", file=sys.stderr)
        return 1
    print("The host is as it was: `ip netns list` and `ip link` unchanged.")
    return 0
