"""The CLI shares one lab across separate invocations through its state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podlab.lab.ownership import leftovers
from podlab.lab.pytest_plugin import unique_lab_name
from tests.e2e.helpers import host_netns, podlab

pytestmark = pytest.mark.root

NODE_FIELDS = {"name", "instance_id", "instance_type", "zone", "vswitch", "primary_ip", "mac",
               "netns"}


def test_up_status_exec_down() -> None:
    name = unique_lab_name()
    up = podlab("up", "--name", name, "--nodes", "3")
    try:
        assert up.returncode == 0, up.stderr
        assert "started node n3" in up.stderr
        status = json.loads(podlab("status", "--name", name, "--json").stdout)
        assert status["name"] == name
        assert [n["name"] for n in status["nodes"]] == ["n1", "n2", "n3"]
        assert all(set(n) >= NODE_FIELDS for n in status["nodes"])
        assert {n["netns"] for n in status["nodes"]} <= host_netns()

        n3_ip = status["nodes"][2]["primary_ip"]
        ping = podlab("exec", "--name", name, "n1", "--", "ping", "-c", "1", "-W", "1", n3_ip)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert podlab("exec", "--name", name, "n1", "--", "false").returncode == 1
        n3 = podlab("exec", "n3", "--name", name, "--", "ip", "-br", "addr", "show", "eth0")
        assert n3_ip in n3.stdout, n3.stderr  # --name after TARGET is podlab's, -br is ip's

        logs = podlab("logs", "--name", name)
        assert "fabric.plug_eni" in logs.stdout
        assert "node.up" in logs.stdout
        table = podlab("status", "--name", name).stdout
        assert "n3" in table
        assert status["nodes"][0]["mac"] in table
    finally:
        down = podlab("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert leftovers(name) == []


def test_unknown_lab_and_target_are_clear_errors() -> None:
    missing = podlab("status", "--name", "nolab")
    assert missing.returncode == 1
    assert "no lab named 'nolab'" in missing.stderr


def test_bad_topology_fails_before_anything_is_made(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("vswitches: [{id: vsw-a, zone: z, cidr: 192.168.3.0/24}]\n"
                   "nodes: [{name: n1, vswitch: vsw-b}]\n")
    name = unique_lab_name()
    up = podlab("up", "--name", name, "--topology", str(bad))
    assert up.returncode == 1
    assert "nodes[0].vswitch" in up.stderr
    assert leftovers(name) == []


def test_apply_get_probe_and_kubeconfig() -> None:
    name = unique_lab_name()
    example = str(Path(__file__).parents[2] / "examples/web.yaml")
    assert podlab("up", "--name", name).returncode == 0
    try:
        kubeconfig = podlab("kubeconfig", "--name", name).stdout.strip()
        assert "server: https://127.0.0.1:" in Path(kubeconfig).read_text()
        applied = podlab("apply", "--name", name, "-f", example, "--wait")
        assert applied.returncode == 0, applied.stderr
        assert "statefulset/web created" in applied.stdout
        pods = json.loads(podlab("get", "pods", "--name", name, "--json").stdout)
        assert {p["metadata"]["name"] for p in pods if p["metadata"]["namespace"] == "default"
                } == {"client", "web-0", "web-1", "web-2"}
        assert sum(p["metadata"]["namespace"] == "kube-system" for p in pods) == 2, "coredns"
        assert "CLUSTER-IP" in podlab("get", "svc", "--name", name).stdout
        ok = podlab("probe", "--name", name, "default/client", "svc/default/web", "--json")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert json.loads(ok.stdout)["answered_by"].startswith("web-")
        udp = podlab("probe", "--name", name, "default/client", "svc/default/web",
                     "--port", "9000", "--proto", "udp")
        assert udp.returncode == 0, udp.stdout
        refused = podlab("probe", "--name", name, "default/client", "default/web-0", "--port",
                         "81")
        assert refused.returncode == 1
        assert "refused" in refused.stdout
        status = json.loads(podlab("status", "--name", name, "--json").stdout)
        ips = {p["status"]["podIP"] for p in pods}
        assert {p["ip"] for p in status["pods"]} == ips
        bad = podlab("apply", "--name", name, "-f", "/dev/null/nothing")
        assert bad.returncode != 0
    finally:
        assert podlab("down", "--name", name).returncode == 0
    assert leftovers(name) == []
