"""`podlab reach` on the upstream netpol model in a lab with no NetworkPolicy: every pod
reaches every pod on the ports they serve, over TCP and UDP, itself included; a port
nobody serves is not reached, nor is one a pod's firewall drops (as a policy would)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from podlab.lab import Lab
from podlab.lab.kube.manifests import LabApi
from podlab.lab.netpol_model import UPSTREAM, apply_model
from podlab.lab.reach import lab_pods, probe_matrix
from podlab.lab.reachability import Reachability, differences
from tests.e2e.helpers import podlab

pytestmark = pytest.mark.root


def model_lab(lab: Lab) -> LabApi:
    api = LabApi(lab.state.kubeconfig)
    apply_model(api)
    return api


def test_without_policies_every_pod_reaches_every_served_port(lab: Lab) -> None:
    api = model_lab(lab)
    x = api.call("GET", "/api/v1/namespaces/x")["metadata"]["labels"]
    assert x == {"ns": "x", "kubernetes.io/metadata.name": "x"}  # namespaceSelector's labels
    pods = lab_pods(lab.state, api, UPSTREAM.namespaces)
    assert [p.name for p in pods] == UPSTREAM.all_pods()

    started = time.monotonic()
    observed = probe_matrix(pods, [80, 81, 82], ["tcp", "udp"])
    took = time.monotonic() - started
    print(f"\n9x9 pods x 3 ports x 2 protocols ({len(observed.connected)} probes): {took:.2f}s")
    expected = Reachability(True).expect("*", "*", False, port=82)  # 82: nobody serves it
    assert len(observed.connected) == 9 * 9 * 3 * 2
    assert differences(expected, observed) == []


@pytest.mark.kernel("iptables")
def test_reach_prints_tables_json_and_the_differences_from_an_expectation(
        lab: Lab, tmp_path: Path) -> None:
    model_lab(lab)
    # z/c drops what reaches its port 81 from other pods, as an ingress policy would (its
    # own connections to itself go over lo)
    for proto in ("tcp", "udp"):
        lab.exec("z/c", ["iptables", "-A", "INPUT", "-i", "eth0", "-p", proto, "--dport", "81",
                         "-j", "DROP"])

    text = podlab("reach", "--name", lab.name, "--ports", "81", "--protocols", "udp")
    assert text.returncode == 0, text.stderr
    table = text.stdout.split("81/udp\n", 1)[1].splitlines()
    assert table[0].split() == ["-", *UPSTREAM.all_pods()]
    assert [row.split() for row in table[1:]] == [
        [pod, *(["."] * 8), "." if pod == "z/c" else "X"] for pod in UPSTREAM.all_pods()]

    out = podlab("reach", "--name", lab.name, "--json")
    assert out.returncode == 0, out.stderr
    pairs = json.loads(out.stdout)["pairs"]
    assert len(pairs) == 9 * 9 * 2 * 2
    assert set(pairs[0]) == {"from", "to", "port", "protocol", "connected"}
    assert {(p["to"], p["port"]) for p in pairs if not p["connected"]} == {("z/c", 81)}

    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps({"default": True, "pairs": [
        {"from": "*", "to": "z/c", "port": 81, "connected": False},
        {"from": "x/a", "to": "y/b", "port": 80, "protocol": "tcp", "connected": False}]}))
    wrong = podlab("reach", "--name", lab.name, "--expect", str(expect))
    assert wrong.returncode == 1, wrong.stderr
    assert "80/tcp comparison" in wrong.stdout
    assert wrong.stdout.rstrip().endswith(
        "323 of 324 probes as expected\n"
        "x/a -> y/b 80/tcp: expected not connected, observed connected")
    as_json = json.loads(podlab("reach", "--name", lab.name, "--expect", str(expect),
                                "--json").stdout)
    assert as_json["differences"] == [{"from": "x/a", "to": "y/b", "port": 80,
                                       "protocol": "tcp", "expected": False,
                                       "connected": True}]

    expect.write_text(json.dumps({"default": True, "pairs": [
        {"from": "*", "to": "z/c", "port": 81, "connected": False}]}))
    right = podlab("reach", "--name", lab.name, "--expect", str(expect))
    assert right.returncode == 0, right.stdout + right.stderr
    assert "324 of 324 probes as expected" in right.stdout

    typo = podlab("reach", "--name", lab.name, "--namespaces", "x,y", "--expect", str(expect))
    assert typo.returncode == 1
    assert "do not have: * -> z/c" in typo.stderr
    empty = podlab("reach", "--name", lab.name, "--namespaces", "default")
    assert empty.returncode == 1
    assert "no Running pods in namespace(s) default" in empty.stderr
    assert "-m podlab.lab.netpol_model | " in empty.stderr
