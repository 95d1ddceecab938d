"""A small cluster for datapath tests: ENIs plugged into nodes, pods plumbed by a datapath,
and the connectivity matrix probed with real TCP connections.

Default 3-node topology: n1 and n3 in vsw-a (192.168.0.0/24), n2 in vsw-b (192.168.1.0/24).
n3 runs no pods: it is the ECS instance in the VPC outside the cluster.

    p1, p2 on n1, ENI in vsw-a        (shared datapaths: one ENI; exclusive: one each)
    p3 on n2, ENI in vsw-b            across vSwitches from p1
    p4 on n2, ENI in vsw-a            across nodes, same vSwitch as p1
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from podlab.datapath import (
    Datapath,
    EniLink,
    PodInterfaces,
    PodNetwork,
    eni_on_node,
    prepare_eni,
)
from podlab.datapath.netlink import in_netns
from podlab.datapath.nodelocal import DNS_PORT, NODE_LOCAL_DNS
from podlab.lab import Lab, netns
from tests.e2e.helpers import ip_json

PORT = 8080
_macs = itertools.count(1)


@dataclass(frozen=True)
class PodSpec:
    name: str
    node: str
    vswitch: str
    ip: str
    eni: str  # the ENI id when ENIs are shared; an exclusive ENI is named after its pod
    namespace: str = "default"

    @property
    def key(self) -> str:
        """The pod in World's dicts: its name, `ns/name` outside the default namespace."""
        return self.name if self.namespace == "default" else f"{self.namespace}/{self.name}"


PODS = (
    PodSpec("p1", "n1", "vsw-a", "192.168.0.101", "eni-n1a"),
    PodSpec("p2", "n1", "vsw-a", "192.168.0.102", "eni-n1a"),
    PodSpec("p3", "n2", "vsw-b", "192.168.1.103", "eni-n2b"),
    PodSpec("p4", "n2", "vsw-a", "192.168.0.104", "eni-n2a"),
)


@dataclass
class World:
    lab: Lab
    datapath: Datapath
    enis: dict[str, EniLink] = field(default_factory=dict)
    pods: dict[str, PodNetwork] = field(default_factory=dict)
    results: dict[str, PodInterfaces] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # pod (its spec's key) -> its node

    @property
    def exclusive(self) -> bool:
        return self.datapath.name == "exclusive-eni"

    def node_netns(self, node: str) -> str:
        return self.lab.state.node(node).netns

    def plug(self, spec: PodSpec) -> EniLink:
        """The pod's ENI, plugged (and prepared, when shared) on first use."""
        eni_id = f"eni-{spec.name}" if self.exclusive else spec.eni
        if eni_id not in self.enis:
            ns = self.node_netns(spec.node)
            vsw = self.lab.topology.vswitch(spec.vswitch)
            mac = f"00:16:3e:dd:00:{next(_macs):02x}"
            self.lab.fabric.plug_eni(ns, eni_id, mac)
            eni = eni_on_node(ns, mac, vsw.gateway, vsw.cidr, timeout=0)
            if not self.exclusive:
                prepare_eni(ns, eni)
            self.enis[eni_id] = eni
        self.lab.fabric.route_ip(spec.ip, eni_id)
        return self.enis[eni_id]

    def add(self, spec: PodSpec) -> PodNetwork:
        """Create the pod's netns, route its IP to its ENI, and plumb it."""
        eni = self.plug(spec)
        state = self.lab.add_pod(spec.namespace, spec.name, spec.node)
        pod = PodNetwork(state.netns, IPv4Address(spec.ip), eni)
        self.results[spec.key] = self.datapath.setup(self.node_netns(spec.node), pod)
        self.pods[spec.key] = pod
        self.nodes[spec.key] = spec.node
        return pod


@contextmanager
def peer_reporters(netnses: list[str]) -> Iterator[None]:
    """In each netns, an HTTP server (threads of this process, sockets bound in that netns)
    that answers with the client's address as it saw it: no process to start per receiver."""
    socks = [netns.listen(name, "0.0.0.0", PORT) for name in netnses]

    def serve(sock: socket.socket) -> None:
        while True:
            try:
                conn, (host, _port) = sock.accept()
            except OSError:  # shut down
                return
            with conn:
                conn.recv(4096)
                body = host.encode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for sock in socks:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in threads:
            t.join()


def peer_seen(lab: Lab, source: str, ip: str) -> str:
    """The source address the receiver at `ip` saw for a connection from `source`."""
    proc = lab.exec(source, ["curl", "-s", "--max-time", "3", f"http://{ip}:{PORT}/"],
                    check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"unreachable (curl {proc.returncode})"


EDGES = ("p1 -> p2", "p2 -> p1", "p1 -> p4", "p4 -> p1", "p1 -> p3", "p3 -> p1",
         "n1 -> p1", "p1 -> n1", "p1 -> n3", "p3 -> n3")


def _target(name: str) -> str:
    return f"default/{name}" if name.startswith("p") else name


def assert_connectivity(world: World) -> None:
    """Pod to pod on one node, across nodes, across vSwitches; node to pod and back; pod to
    an ECS instance outside the cluster: each receiver sees the sender's own IP (no NAT)."""
    lab = world.lab
    ips = {"n1": lab.state.node("n1").primary_ip, "n3": lab.state.node("n3").primary_ip,
           **{name: str(pod.ip) for name, pod in world.pods.items()}}
    receivers = sorted({edge.split(" -> ")[1] for edge in EDGES})
    with peer_reporters([lab.state.target_netns(_target(r)) for r in receivers]):
        seen = {edge: peer_seen(lab, _target(edge.split(" -> ")[0]), ips[edge.split(" -> ")[1]])
                for edge in EDGES}
    assert seen == {edge: ips[edge.split(" -> ")[0]] for edge in EDGES}


def assert_plumbed(world: World) -> None:
    problems = {name: world.datapath.check(world.node_netns(world.nodes[name]), pod)
                for name, pod in world.pods.items()}
    assert problems == {name: [] for name in world.pods}


def assert_result_matches_the_netns(world: World, name: str) -> None:
    """The CNI result's interface, address and route are what the pod's netns holds."""
    result, target = world.results[name], f"default/{name}"
    (ipc,) = result.ips
    iface = result.interfaces[ipc.interface]
    assert (iface.name, iface.sandbox) == ("eth0", world.pods[name].sandbox)
    (eth0,) = ip_json(world.lab, target, "addr", "show", "eth0")
    assert eth0["address"] == iface.mac
    assert [f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"]
            if a["family"] == "inet"] == [str(ipc.address)]
    (default,) = ip_json(world.lab, target, "route", "show", "default")
    assert default["gateway"] == str(ipc.gateway)
    assert [(str(r.dst), str(r.gw)) for r in result.routes] == [("0.0.0.0/0", str(ipc.gateway))]


def assert_setup_is_idempotent(world: World, name: str) -> None:
    node = world.nodes[name]
    before = node_snapshot(world.lab, node)
    again = world.datapath.setup(world.node_netns(node), world.pods[name])
    assert again == world.results[name]
    assert node_snapshot(world.lab, node) == before


def assert_check_reports_deleted_routes(world: World, name: str) -> None:
    """check() names a deleted route (the pod's default; the node's /32 to a shared-ENI pod)
    and setup() puts it back."""
    node, pod = world.node_netns(world.nodes[name]), world.pods[name]
    world.lab.exec(f"default/{name}", ["ip", "route", "del", "default"])
    assert [p for p in world.datapath.check(node, pod) if "no default" in p]
    if not world.exclusive:
        world.lab.exec(world.nodes[name], ["ip", "route", "del", f"{pod.ip}/32"])
        assert [p for p in world.datapath.check(node, pod) if f"no route {pod.ip}/32" in p]
    world.datapath.setup(node, pod)
    assert world.datapath.check(node, pod) == []


@contextmanager
def node_local_echo(node_netns: str) -> Iterator[list[str]]:
    """UDP and TCP echo on the node-local address in the node's netns; yields the client
    addresses they saw."""
    udp = netns.listen(node_netns, NODE_LOCAL_DNS, DNS_PORT, socket.SOCK_DGRAM)
    tcp = netns.listen(node_netns, NODE_LOCAL_DNS, DNS_PORT)
    seen: list[str] = []

    def serve_udp() -> None:
        while True:
            try:
                data, peer = udp.recvfrom(512)
            except OSError:  # closed
                return
            if peer is None:  # shut down
                return
            seen.append(peer[0])
            udp.sendto(data, peer)

    def serve_tcp() -> None:
        while True:
            try:
                conn, peer = tcp.accept()
            except OSError:  # shut down
                return
            seen.append(peer[0])
            with conn:
                conn.sendall(conn.recv(512))

    threads = [threading.Thread(target=t, daemon=True) for t in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    try:
        yield seen
    finally:
        for sock in (udp, tcp):
            with suppress(OSError):  # ENOTCONN for UDP, which it wakes all the same
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in threads:
            t.join()


def ask_udp(pod_netns: str) -> tuple[bytes, str]:
    sock = in_netns(pod_netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with sock:
        sock.settimeout(2)
        sock.sendto(b"udp?", (NODE_LOCAL_DNS, DNS_PORT))
        data, (source, _) = sock.recvfrom(512)
    return data, source


def ask_tcp(pod_netns: str) -> bytes:
    sock = in_netns(pod_netns, lambda: socket.create_connection((NODE_LOCAL_DNS, DNS_PORT),
                                                                timeout=2))
    with sock:
        sock.sendall(b"tcp?")
        return sock.recv(512)


def assert_reaches_node_local(pod_netns: str, pod_ip: str, node_netns: str) -> None:
    """The pod's UDP and TCP to the node-local DNS address reach listeners in its node's
    netns (`node_local_address` done), which see the pod's own address (autopath needs
    it); the UDP reply comes from the address asked (glibc drops one from any other)."""
    with node_local_echo(node_netns) as seen:
        assert ask_udp(pod_netns) == (b"udp?", NODE_LOCAL_DNS)
        assert ask_tcp(pod_netns) == b"tcp?"
    assert seen == [pod_ip, pod_ip], "the node's listener sees the pod's own address"


def node_snapshot(lab: Lab, node: str) -> dict[str, object]:
    """What a datapath may change on a node: links and their IPv4 addresses, routes of every
    table, rules, neighbour proxies. Counters and learned neighbours are left out."""
    def ip(*argv: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(lab.exec(node, ["ip", "-j", *argv]).stdout or "[]")
        return out

    return {
        "links": sorted((link["ifname"], link.get("address"), sorted(link["flags"]),
                         sorted(a["local"] for a in link["addr_info"] if a["family"] == "inet"))
                        for link in ip("addr", "show")),
        "routes": ip("-4", "route", "show", "table", "all"),
        "rules": ip("-4", "rule", "show"),
        "proxies": ip("-4", "neigh", "show", "proxy"),
    }
