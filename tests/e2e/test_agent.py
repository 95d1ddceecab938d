"""Node agents in a lab: each warms its pool from the fake cloud over the fabric, serves
allocs on a root-only socket, exposes metrics, and survives `kill -9` at any point
without losing or duplicating an address."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from podlab.cni import protocol
from podlab.cni.crashpoints import ENV as CRASH_ENV
from podlab.cni.crashpoints import POINTS
from podlab.cni.protocol import CONF_FILE
from podlab.cni.store import Store
from podlab.datapath import select_datapath
from podlab.fakecloud import Topology
from podlab.lab import Lab

pytestmark = pytest.mark.root

LabFactory = Callable[..., Lab]
# Room for a burst to need several cloud mutations (8 ENIs of 30 addresses).
BIG_NODE = Topology.from_dict({
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "192.168.0.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.4xlarge"}]})


def node_enis(lab: Lab, node: str) -> dict[str, list[str]]:
    """The node's secondary ENIs and their addresses, as the cloud has them."""
    assert lab.cloud is not None
    instance = lab.state.node(node).instance_id
    return {e.id: e.ips for e in lab.cloud.model.all_enis()
            if e.instance_id == instance and e.type == "Secondary"}


def test_agents_warm_their_pools_and_serve_allocs(lab: Lab) -> None:
    for node in lab.state.nodes:
        assert node.datapath == select_datapath().name  # ipvlan where the kernel has it
        assert (Path(node.cni_bin_dir) / "podlab-cni").exists()
        assert node.cni_network == "podlab"
        info = protocol.call(node.agent_socket, "info")
        assert info["instance_id"] == node.instance_id
        assert info["idle"] >= 2  # the lab's min_pool_size
        lease = protocol.call(node.agent_socket, "alloc", pod="default/web")["lease"]
        assert lease["ip"] in node_enis(lab, node.name)[lease["eni_id"]]
        assert lease["cidr"] == str(lab.topology.vswitch(node.vswitch).cidr)
        assert lease["gateway"] == node.gateway
        links = json.loads(lab.exec(node.name, ["ip", "-j", "link"]).stdout)
        assert lease["mac"] in {link.get("address") for link in links}, "ENI not in the node"


def test_socket_is_root_only_and_cni_conf_follows_readiness(lab: Lab) -> None:
    assert lab.agents is not None
    node = lab.state.nodes[0]
    assert stat.S_IMODE(Path(node.agent_socket).stat().st_mode) == 0o600
    conf = Path(node.cni_conf_dir) / CONF_FILE
    written = json.loads(conf.read_text())
    assert written["plugins"][0] == {"type": "podlab-cni", "agent_socket": node.agent_socket}
    lab.agents.stop(node.name)
    assert not conf.exists(), "a stopped agent takes its node out of service"
    with pytest.raises(protocol.AgentUnavailable):
        protocol.call(node.agent_socket, "info")
    lab.agents.start(node.name)
    assert conf.exists()


def test_metrics_count_addresses_and_cloud_calls(lab: Lab) -> None:
    node = lab.state.nodes[0]
    protocol.call(node.agent_socket, "alloc", pod="default/web")
    scrape = lab.exec(node.name, ["python3", "-c", "import urllib.request,sys; sys.stdout.write("
                                  f"urllib.request.urlopen('http://{node.primary_ip}:9464/"
                                  "metrics').read().decode())"]).stdout
    used = [line for line in scrape.splitlines()
            if line.startswith("podlab_agent_ips{") and 'state="used"' in line]
    assert len(used) == 1
    assert used[0].endswith(" 1.0")
    assert 'podlab_agent_cloud_calls_total{action="CreateNetworkInterface",result="OK"}' in scrape
    assert "podlab_agent_alloc_seconds_bucket" in scrape


def _burst(socket: str, pods: list[str], got: dict[str, str]) -> None:
    """Alloc for every pod from 8 threads; record what the agent answered."""
    def worker(mine: list[str]) -> None:
        for pod in mine:
            try:
                got[pod] = protocol.call(socket, "alloc", pod=pod, timeout=20)["lease"]["ip"]
            except (protocol.AgentError, protocol.AgentUnavailable, OSError):
                return  # the agent died under us: this pod's answer never came
    threads = [threading.Thread(target=worker, args=(pods[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize(("point", "nth"), [(p, n) for p in POINTS for n in (1, 2)])
def test_kill_9_at_a_crash_point_loses_and_duplicates_nothing(
        lab_factory: LabFactory, point: str, nth: int) -> None:
    # Pods here exist only as allocs on the socket: no API whose pod list would GC them.
    lab = lab_factory(BIG_NODE, control_plane=False,
                      agent_settings={"min_pool_size": 0, "max_pool_size": 2})
    assert lab.agents is not None
    node = lab.state.nodes[0]
    before = {f"default/early-{i}": protocol.call(node.agent_socket, "alloc",
                                                  pod=f"default/early-{i}")["lease"]["ip"]
              for i in range(3)}
    lab.agents.stop(node.name)
    lab.agents.start(node.name, env={CRASH_ENV: f"{point}:{nth}"}, restart=False)
    got: dict[str, str] = {}
    _burst(node.agent_socket, [f"default/burst-{i}" for i in range(40)], got)
    proc = lab.agents.procs[node.name]
    assert proc.wait(timeout=30) == -9, "the agent was to die at the crash point"
    lab.agents.procs.pop(node.name)
    lab.agents.start(node.name)  # restarts, reconciles, serves
    _survivors_keep_their_addresses(lab, node.name, {**before, **got})


def test_kill_9_from_outside_in_the_middle_of_a_burst(lab_factory: LabFactory) -> None:
    # Pods here exist only as allocs on the socket: no API whose pod list would GC them.
    lab = lab_factory(BIG_NODE, control_plane=False,
                      agent_settings={"min_pool_size": 0, "max_pool_size": 2})
    assert lab.agents is not None
    node = lab.state.nodes[0]
    got: dict[str, str] = {}
    burst = threading.Thread(target=_burst, args=(
        node.agent_socket, [f"default/burst-{i}" for i in range(200)], got))
    burst.start()
    deadline = time.monotonic() + 30
    while len(got) < 20 and burst.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)  # polling the burst's progress, not waiting for an event
    lab.agents.kill(node.name)
    burst.join()
    assert 20 <= len(got) < 200, "the kill landed mid-burst"
    lab.agents.start(node.name)
    _survivors_keep_their_addresses(lab, node.name, got)


def _survivors_keep_their_addresses(lab: Lab, name: str, held: dict[str, str]) -> None:
    """Every pod answered before the crash has its address back; nothing is held twice;
    the store and the cloud agree."""
    assert lab.agents is not None
    node = lab.state.node(name)
    for pod, ip in held.items():
        again = protocol.call(node.agent_socket, "alloc", pod=pod)["lease"]["ip"]
        assert again == ip, f"{pod} had {ip}, now {again}"
    lab.agents.stop(name)  # quiesce: a stopped agent is mid-nothing
    state = Store(Path(str(lab.agents.config(node)["state_dir"])) / "agent.db")
    try:
        rows = state.ips()
        owners = [r.pod for r in rows if r.pod]
        assert len(owners) == len(set(owners))
        cloud = {ip for ips in node_enis(lab, name).values() for ip in ips}
        assert {r.address for r in rows} == cloud, "the store and the cloud disagree"
    finally:
        state.close()


def test_agent_without_keys_uses_the_instance_ram_role(lab_factory: LabFactory) -> None:
    """A lab's agents have no key: they sign with their node's RAM role, whose STS
    credentials (here for 4 s) they read again from metadata before they expire, and keep
    working across several rotations; a set that has expired is refused."""
    lifetime = 4.0
    lab = lab_factory(sts_lifetime=lifetime)
    assert lab.cloud is not None
    node = lab.state.nodes[0]
    started = len(lab.cloud.endpoint.calls)
    for i in range(4):  # each round drains the pool below its minimum: cloud calls
        for j in range(3):
            assert protocol.call(node.agent_socket, "alloc", pod=f"default/p{i}-{j}")["lease"]
        time.sleep(lifetime * 0.75)
    calls = list(lab.cloud.endpoint.calls)
    keys = [c.access_key_id for c in calls]
    assert all(k.startswith("STS.") for k in keys), "an agent signed with a long-lived key"
    assert len(set(keys[started:])) >= 3, "n1's agent kept one set of credentials"
    assert not [c for c in calls if c.code.startswith("InvalidSecurityToken")]
    expired = lab.cloud.endpoint.ram.principal(keys[0])
    client = EcsClient(Config(access_key_id=expired.access_key_id,
                              access_key_secret=expired.secret,
                              security_token=expired.security_token,
                              endpoint=lab.state.cloud_endpoint_host, region_id="cn-hangzhou",
                              protocol="http"))
    with pytest.raises(TeaException) as caught:
        client.describe_network_interfaces(ecs_models.DescribeNetworkInterfacesRequest(
            region_id="cn-hangzhou"))
    assert caught.value.code == "InvalidSecurityToken.Expired"


SMALL_NODE = Topology.from_dict({  # two ENIs for pods, six addresses each
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "192.168.0.0/24"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"}]})


def _status(lab: Lab, node: str) -> tuple[int, dict[str, object]]:
    """CNI STATUS through the node's podlab-cni, as the runtime asks it for kubelet."""
    state = lab.state.node(node)
    conf = {"cniVersion": "1.1.0", "name": "podlab", "type": "podlab-cni",
            "agent_socket": state.agent_socket}
    proc = subprocess.run([Path(state.cni_bin_dir) / "podlab-cni"], input=json.dumps(conf),
                          env={"CNI_COMMAND": "STATUS", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _alloc_until(socket: str, pod: str, deadline: float, got: dict[str, str]) -> None:
    """Ask as kubelet does for a sandbox: again after each failure, until the deadline."""
    while time.monotonic() < deadline:
        try:
            got[pod] = protocol.call(socket, "alloc", pod=pod, timeout=10)["lease"]["ip"]
            return
        except (protocol.AgentError, protocol.AgentUnavailable):
            time.sleep(0.2)  # a retry's pause, not a wait for an event


def test_a_metadata_outage_during_allocations_stops_nothing_for_good(
        lab_factory: LabFactory) -> None:
    """Issue 18 (2): metadata unreachable for 12 s while pods ask. The node goes NotReady
    while maintenance fails; afterwards the ENIs the outage left attaching are settled
    without waiting for the periodic reconcile, and every pending pod gets an address."""
    lab = lab_factory(SMALL_NODE, control_plane=False, agent_settings={
        "min_pool_size": 0, "max_pool_size": 12, "reconcile_period": 3600})
    assert lab.agents is not None
    node = lab.state.nodes[0]
    drop = ["OUTPUT", "-d", "100.100.100.200", "-j", "DROP"]
    lab.exec(node.name, ["iptables", "-I", *drop])
    got: dict[str, str] = {}
    outage_ends = time.monotonic() + 12
    pods = [f"default/p{i}" for i in range(10)]
    threads = [threading.Thread(target=_alloc_until, args=(
        node.agent_socket, pod, outage_ends + 60, got)) for pod in pods]
    try:
        for t in threads:
            t.start()
        while _status(lab, node.name)[0] == 0:
            assert time.monotonic() < outage_ends, "STATUS kept answering ready"
            time.sleep(0.2)
        code, error = _status(lab, node.name)
        assert (code, error["code"]) == (1, 50), error
        assert "maintenance failed" in str(error["details"]), error
    finally:
        time.sleep(max(0.0, outage_ends - time.monotonic()))  # the outage lasts 12 s
        lab.exec(node.name, ["iptables", "-D", *drop])
    for t in threads:
        t.join()
    assert sorted(got) == pods, "pods still pending after metadata came back"
    assert len(set(got.values())) == len(pods)
    for extra in ("default/q0", "default/q1"):  # the pool grows again
        _alloc_until(node.agent_socket, extra, time.monotonic() + 30, got)
    assert len(set(got.values())) == len(pods) + 2
    deadline = time.monotonic() + 30
    while _status(lab, node.name)[0] != 0:
        assert time.monotonic() < deadline, "the node stayed NotReady"
        time.sleep(0.2)
    assert '"event": "maintain_failed"' in lab.agents.log_tail(node.name, 1_000_000)


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("Threads:")))


def test_half_open_connections_do_not_wedge_the_agent(lab_factory: LabFactory) -> None:
    """Issue 18 (5): 2,000 connections that send half a request and stall. The agent
    still answers at once with a bounded number of threads, drops the stalled ones after
    its read deadline, and is normal once they are gone."""
    lab = lab_factory(control_plane=False)
    assert lab.agents is not None
    node = lab.state.nodes[0]
    pid = lab.agents.procs[node.name].pid
    before = _threads(pid)
    stalled: list[socket.socket] = []
    try:
        for _ in range(2000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stalled.append(s)
            s.connect(node.agent_socket)
            s.sendall(b'{"op": "alloc", "pod": "def')
        got: dict[str, str] = {}  # a full backlog answers busy at once: ask again
        _alloc_until(node.agent_socket, "default/web", time.monotonic() + 2.0, got)
        assert "default/web" in got, "the alloc waited behind stalled clients"
        assert _threads(pid) <= before + 70, "a thread per connection"
        first = stalled[0]
        first.settimeout(30)
        assert first.recv(1) == b"", "a stalled client is dropped after the read deadline"
    finally:
        for s in stalled:
            s.close()
    again = protocol.call(node.agent_socket, "alloc", pod="default/web2", timeout=10)
    assert again["lease"]["ip"] != got["default/web"]
    assert _threads(pid) <= before + 70
