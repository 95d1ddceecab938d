"""podlab-cni driven as a runtime drives it, against the node agents of a lab: pods get ENI
secondary addresses and reach each other across nodes; DEL gives everything back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from podlab.cni import protocol
from podlab.datapath.veth import HOST_PREFIX
from podlab.lab import Lab
from podlab.lab.cni_runtime import Attachment, CniRuntime, NetworkList, PluginExec
from podlab.lab.conformance.schemas import result_schema
from podlab.lab.pytest_plugin import LabFactory
from tests.e2e.helpers import cni, ip_json, ping

pytestmark = pytest.mark.root


def test_pods_get_eni_addresses_and_reach_each_other_across_nodes(lab: Lab) -> None:
    lab.add_pod("default", "a", "n1")
    lab.add_pod("default", "b", "n2")
    rc_a, result_a = cni(lab, "ADD", "default/a", "n1")
    rc_b, result_b = cni(lab, "ADD", "default/b", "n2")
    assert (rc_a, rc_b) == (0, 0), (result_a, result_b)
    ip_a = result_a["ips"][0]["address"].split("/")[0]
    ip_b = result_b["ips"][0]["address"].split("/")[0]
    assert lab.cloud is not None
    assigned = {ip for e in lab.cloud.model.all_enis() if e.type == "Secondary" for ip in e.ips}
    assert {ip_a, ip_b} <= assigned, "pod addresses are ENI secondary addresses"
    addresses = {a["local"] for link in ip_json(lab, "default/a", "addr", "show", "eth0")
                 for a in link["addr_info"]}
    assert ip_a in addresses
    assert ping(lab, "default/a", ip_b, count=2)
    assert ping(lab, "n1", ip_a)
    assert cni(lab, "CHECK", "default/a", "n1")[0] == 0


def test_add_twice_fails_and_del_is_idempotent_and_gives_the_address_back(lab: Lab) -> None:
    lab.add_pod("default", "a", "n1")
    socket = lab.state.node("n1").agent_socket
    rc, result = cni(lab, "ADD", "default/a", "n1")
    assert rc == 0, result
    rc, again = cni(lab, "ADD", "default/a", "n1")
    assert (rc, again["code"]) == (1, 100)
    assert "already exists" in again["details"]
    assert cni(lab, "CHECK", "default/a", "n1")[0] == 0, "the refused ADD left the pod alone"
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    used = [ip for e in protocol.call(socket, "info")["enis"] for ip in e["ips"]
            if ip["state"] == "used"]
    assert used == []
    links = {str(link["ifname"]) for link in ip_json(lab, "n1", "link")}
    assert not any(name.startswith(HOST_PREFIX) for name in links), "the pod's veth is gone"


def test_errors_are_the_specs(lab: Lab) -> None:
    lab.add_pod("default", "a", "n1")
    rc, error = cni(lab, "ADD", "default/a", "n1", version="0.3.1")
    assert rc != 0
    assert error["code"] == 1
    assert lab.agents is not None
    lab.agents.stop("n1")
    rc, error = cni(lab, "ADD", "default/a", "n1")
    assert (rc, error["code"]) == (1, 11)
    rc, error = cni(lab, "STATUS", "default/a", "n1")
    assert error["code"] == 50


def test_first_in_a_chain_with_portmap_bandwidth_and_tuning(lab: Lab) -> None:
    lab.add_pod("default", "a", "n1")
    # Debian's reference plugins speak up to 1.0.0, so the chain does.
    net = NetworkList.from_dict({"cniVersion": "1.0.0", "name": "podlab", "plugins": [
        {"type": "podlab-cni", "agent_socket": lab.state.node("n1").agent_socket},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "ingressRate": 1_000_000, "ingressBurst": 100_000},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.log_martians": "1"}}]})
    # The runtime runs in the node: bandwidth looks for the pod's veth peer there.
    runtime = CniRuntime(PluginExec([lab.state.node("n1").cni_bin_dir, "/usr/lib/cni"],
                                    wrap=["ip", "netns", "exec", lab.state.node("n1").netns]))
    attachment = Attachment("c1", f"/run/netns/{lab.state.pod('default', 'a').netns}",
                            args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default",
                                  "K8S_POD_NAME": "a"})
    result = runtime.add(net, attachment)
    jsonschema.validate(result, result_schema("1.0.0"))
    assert result["ips"][0]["address"].endswith("/32")  # veth: the pod's /32
    runtime.check(net, attachment)
    runtime.delete(net, attachment)


def test_exclusive_eni_pods_own_their_eni_and_give_it_back(lab_factory: LabFactory) -> None:
    lab = lab_factory(agent_settings={"eni_mode": "exclusive", "min_pool_size": 0})
    assert {n.datapath for n in lab.state.nodes} == {"exclusive-eni"}
    lab.add_pod("default", "a", "n1")
    lab.add_pod("default", "b", "n2")
    results = [cni(lab, "ADD", p, n) for p, n in (("default/a", "n1"), ("default/b", "n2"))]
    assert [rc for rc, _ in results] == [0, 0], results
    (_, a), (_, b) = results
    assert lab.cloud is not None
    enis = {e.mac: e for e in lab.cloud.model.all_enis()}
    mac_a, ip_a = a["interfaces"][0]["mac"], a["ips"][0]["address"]
    assert enis[mac_a].primary_ip == ip_a.split("/")[0], "the pod's IP is its ENI's own"
    assert not ip_a.endswith("/32"), "an exclusive ENI keeps the vSwitch mask"
    eth0 = ip_json(lab, "default/a", "link", "show", "eth0")[0]
    assert eth0["address"] == mac_a, "the ENI device itself is the pod's eth0"
    assert ping(lab, "default/a", b["ips"][0]["address"].split("/")[0], count=2)
    assert cni(lab, "CHECK", "default/a", "n1")[0] == 0
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    assert cni(lab, "DEL", "default/a", "n1") == (0, {})
    assert [link["ifname"] for link in ip_json(lab, "default/a", "link")] == ["lo"]
    assert mac_a in {link["address"] for link in ip_json(lab, "n1", "link")}, \
        "the ENI is back on its node"


def test_an_eni_that_comes_back_as_a_new_device_still_serves_pods(lab: Lab) -> None:
    """The agent finds and prepares a shared ENI once, not on every ADD. A device that comes
    back (a NIC reset, a detach and re-attach) is new to the kernel, down, with another
    index and routing table: the next ADD must find it and prepare it again."""
    for name, node in (("a", "n1"), ("b", "n2"), ("c", "n1")):
        lab.add_pod("default", name, node)
    assert cni(lab, "ADD", "default/a", "n1")[0] == 0
    rc, b = cni(lab, "ADD", "default/b", "n2")
    assert rc == 0, b
    enis = protocol.call(lab.state.node("n1").agent_socket, "info")["enis"]
    eni = next(e for e in enis if any(ip["pod"] == "default/a" for ip in e["ips"]))
    device = next(link["ifname"] for link in ip_json(lab, "n1", "link")
                  if link.get("address") == eni["mac"])

    lab.fabric.unplug_eni(eni["id"])
    lab.fabric.plug_eni(lab.state.node("n1").netns, eni["id"], eni["mac"], ifname=device)
    for ip in eni["ips"]:
        lab.fabric.route_ip(ip["address"], eni["id"])

    rc, c = cni(lab, "ADD", "default/c", "n1")
    assert rc == 0, c
    ip_c = c["ips"][0]["address"].split("/")[0]
    assert ip_c in {ip["address"] for ip in eni["ips"]}, "c is on the ENI that came back"
    assert ping(lab, "default/c", b["ips"][0]["address"].split("/")[0], count=2)
    assert cni(lab, "CHECK", "default/c", "n1")[0] == 0


def _plugin(lab: Lab, node: str, conf: dict[str, object], **env: str
            ) -> tuple[int, dict[str, Any]]:
    """The node's podlab-cni with `conf` on stdin and exactly the CNI_* variables given."""
    state = lab.state.node(node)
    conf = {"cniVersion": "1.1.0", "name": "podlab", "type": "podlab-cni",
            "agent_socket": state.agent_socket, **conf}
    proc = subprocess.run([Path(state.cni_bin_dir) / "podlab-cni"], input=json.dumps(conf),
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                          text=True, check=False, timeout=60)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _used(lab: Lab, node: str) -> list[str]:
    return [ip["pod"] for e in protocol.call(lab.state.node(node).agent_socket, "info")["enis"]
            for ip in e["ips"] if ip["state"] == "used"]


def test_gc_without_valid_attachments_is_an_invalid_config_and_releases_nothing(
        lab: Lab) -> None:
    """Issue 18 (1): a missing list is not an empty one, or GC frees every live pod's
    address for the next pods to take."""
    lab.add_pod("default", "a", "n1")
    assert cni(lab, "ADD", "default/a", "n1")[0] == 0
    missing: list[dict[str, object]] = [{}, {"cni.dev/valid-attachments": None}]
    for conf in missing:
        rc, error = _plugin(lab, "n1", conf, CNI_COMMAND="GC")
        assert (rc, error.get("code")) == (1, 7), error
        assert "cni.dev/valid-attachments" in error["msg"]
    socket = lab.state.node("n1").agent_socket
    malformed: list[dict[str, Any]] = [{}, {"containers": None}, {"containers": "c2"},
                                       {"containers": [7]}]
    for request in malformed:
        with pytest.raises(protocol.AgentError) as refused:  # the agent's own guard
            protocol.call(socket, "gc_containers", **request)
        assert refused.value.kind == "invalid"
    no_pods: list[dict[str, Any]] = [{}, {"pods": "default/b"}]
    for pods in no_pods:
        with pytest.raises(protocol.AgentError):
            protocol.call(socket, "gc", **pods)
    assert _used(lab, "n1") == ["default/a"]
    rc, _ = _plugin(lab, "n1", {"cni.dev/valid-attachments": []}, CNI_COMMAND="GC")
    assert rc == 0  # an empty list is the runtime's word: nothing is valid
    assert _used(lab, "n1") == []


def test_an_add_with_a_bad_interface_name_is_refused_and_leaks_nothing(lab: Lab) -> None:
    """Issue 18 (8): Linux names are 1-15 bytes without '/' or whitespace, and not '.' or
    '..'. A bad one is the spec's invalid-environment error (4), from the plugin and from
    the agent alike, and leaves no address used."""
    pod = lab.add_pod("default", "a", "n1")
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": f"/run/netns/{pod.netns}",
           "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=a"}
    socket = lab.state.node("n1").agent_socket
    for ifname in ("x" * 40, "a/b", "eth 0", "..", "eth0\n"):
        for command in ("ADD", "CHECK", "DEL"):
            rc, error = _plugin(lab, "n1", {}, CNI_COMMAND=command, CNI_IFNAME=ifname, **env)
            assert (rc, error.get("code")) == (1, 4), (ifname, command, error)
            assert "CNI_IFNAME" in error["msg"]
        with pytest.raises(protocol.AgentError) as refused:
            protocol.call(socket, "add", pod="default/a", container="c1",
                          netns=env["CNI_NETNS"], ifname=ifname)
        assert refused.value.kind == "argument", refused.value
        assert _used(lab, "n1") == [], ifname
    assert cni(lab, "ADD", "default/a", "n1")[0] == 0, "the pod's good ADD still works"
