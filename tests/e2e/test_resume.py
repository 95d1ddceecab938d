"""`podlab up --resume`: a lab whose supervisor was killed with SIGKILL comes back as it
was, through the CLI as a user drives it: every API object, every pod at its address,
the cloud's ENIs and addresses, pods that answer; and `down` then leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from podlab.lab.ownership import leftovers
from podlab.lab.process import wait_gone
from podlab.lab.pytest_plugin import unique_lab_name
from tests.e2e.helpers import eventually, podlab

pytestmark = pytest.mark.root

EXAMPLE = Path(__file__).parents[2] / "examples/web.yaml"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        ports:
        - {name: http, containerPort: 8080}
"""
KINDS = ("namespaces", "nodes", "pods", "services", "endpoints", "endpointslices",
         "statefulsets", "deployments")


def ok(*argv: str) -> str:
    done = podlab(*argv)
    assert done.returncode == 0, f"podlab {' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout


def api_objects(name: str) -> dict[tuple[str, str, str], tuple[str, int]]:
    """Every object of KINDS: (kind, namespace, name) -> (uid, resourceVersion)."""
    found = {}
    for kind in KINDS:
        for obj in json.loads(ok("get", kind, "--name", name, "--json")):
            meta = obj["metadata"]
            found[kind, meta.get("namespace", ""), meta["name"]] = (
                meta["uid"], int(meta["resourceVersion"]))
    return found


def pods(name: str) -> dict[str, dict[str, Any]]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in json.loads(ok("get", "pods", "--name", name, "--json"))}


def cloud(name: str) -> dict[str, Any]:
    """The cloud's ENIs (id, instance, status, addresses) and free addresses."""
    state = json.loads(ok("cloud", "state", "--name", name))
    return {"free": state["vswitches"], "enis": sorted(
        (e["NetworkInterfaceId"], e["InstanceId"], e["Status"],
         tuple(ip["PrivateIpAddress"] for ip in e["PrivateIpSets"]["PrivateIpSet"]))
        for e in state["enis"])}


def settled_cloud(name: str) -> dict[str, Any]:
    """The cloud once the agents' pools stopped changing it (they top up after a burst)."""
    seen = [cloud(name)]

    def unchanged() -> dict[str, Any] | None:
        time.sleep(1.5)  # above the agents' maintain period
        seen.append(cloud(name))
        return seen[-1] if seen[-1] == seen[-2] else None

    return eventually(unchanged, timeout=60, what="the agents' pools to settle")


def kill_and_resume(name: str, unroute: str) -> float:
    """SIGKILL the lab's supervisor, take the router's route to `unroute` (as a kill
    between a cloud call's fabric step and its commit could), then `podlab up --resume`:
    how long the resume took."""
    status = json.loads(ok("status", "--name", name, "--json"))
    os.kill(status["owner_pid"], signal.SIGKILL)
    assert wait_gone(status["owner_pid"], timeout=10)
    refused = podlab("probe", "--name", name, "default/client", "default/web-0")
    assert refused.returncode != 0  # the workloads died with the supervisor
    subprocess.run(["ip", "-n", status["fabric_netns"], "route", "del", f"{unroute}/32"],
                   check=True)
    started = time.monotonic()
    ok("up", "--resume", name)
    return time.monotonic() - started


def test_a_killed_supervisor_s_lab_resumes_as_it_was(tmp_path: Path) -> None:
    name = unique_lab_name()
    deployment = tmp_path / "api.yaml"
    deployment.write_text(DEPLOYMENT)
    ok("up", "--name", name)
    try:
        ok("apply", "--name", name, "-f", str(EXAMPLE), "--wait")
        ok("apply", "--name", name, "-f", str(deployment), "--wait")
        enis, objects, before = settled_cloud(name), api_objects(name), pods(name)
        addresses = {key: pod["status"]["podIP"] for key, pod in before.items()}
        assert len(addresses) == 8  # 4 of web.yaml, 2 of the Deployment, 2 coredns
        assert all(addresses.values())

        took = kill_and_resume(name, unroute=addresses["default/web-1"])
        print(f"resumed a lab of 2 nodes and {len(addresses)} pods in {took:.1f}s")

        after = api_objects(name)
        assert after.keys() == objects.keys()
        for key, (uid, rv) in objects.items():
            assert after[key][0] == uid, key
            assert after[key][1] >= rv, key
        now = pods(name)
        # adopted, not recreated: same sandbox, same address, the object untouched
        assert {key: pod["status"]["podIP"] for key, pod in now.items()} == addresses
        assert {key: p["metadata"]["resourceVersion"] for key, p in now.items()} == {
            key: p["metadata"]["resourceVersion"] for key, p in before.items()}
        status = json.loads(ok("status", "--name", name, "--json"))
        assert {f"{p['namespace']}/{p['name']}": p["ip"] for p in status["pods"]} == addresses
        assert all(node["agent_state"] == "Running" for node in status["nodes"])
        assert cloud(name) == enis
        events = [json.loads(line) for line in ok("logs", "--name", name, "--json").splitlines()]
        fixed = [e["fixed"] for e in events if e["event"] == "fabric.resync"]
        web1 = addresses["default/web-1"]
        assert fixed == [f"routed {web1} to {next(e[0] for e in enis['enis'] if web1 in e[3])}"]

        for target in ("svc/default/web", *(key for key in addresses if key != "default/client")):
            probe = podlab("probe", "--name", name, "default/client", target, "--json")
            assert probe.returncode == 0, f"{target}: {probe.stdout}{probe.stderr}"
        # DNS too: the node-local caches started again, the coredns pods adopted
        assert "2 queries on the wire" in ok("dns", "query", "--name", name, "default/client",
                                             "web")

        # and it goes on: a third api pod gets an address of its own, and answers
        deployment.write_text(DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
        ok("apply", "--name", name, "-f", str(deployment), "--wait")
        grown = {key: p["status"]["podIP"] for key, p in pods(name).items()}
        (new,) = grown.keys() - addresses.keys()
        assert grown[new] not in addresses.values()
        ok("probe", "--name", name, "default/client", new)

        again = podlab("up", "--resume", name)
        assert again.returncode == 1
        assert "nothing to resume" in again.stderr
        assert f"podlab status --name {name}" in again.stderr
    finally:
        ok("down", "--name", name)
    assert leftovers(name) == []


def test_resuming_a_lab_that_never_was_says_what_to_run() -> None:
    name = unique_lab_name()
    resumed = podlab("up", "--resume", name)
    assert resumed.returncode == 1
    assert f"no lab {name!r} to resume" in resumed.stderr
    assert f"podlab up --name {name}" in resumed.stderr
    assert leftovers(name) == []
