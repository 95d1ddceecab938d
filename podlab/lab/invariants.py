"""What must hold in a lab whatever faults it went through, checked in one place that the
e2e tests, scenarios, chaos runs and `podlab check` share (docs/invariants.md):

1. `unique-address`: no two Running pods share an address (the API's podIP, or one
   configured in the pod's netns);
2. `address-routed`: every Running pod's address is assigned in the cloud to an ENI of its
   node, the VPC router sends it to that ENI, and inside the node the kernel's own answer
   (RTM_GETROUTE, as `ip route get`) leads it to the pod and the pod's replies out by it;
3. `agent-agrees`: each node agent's store holds, ENI by ENI, what the cloud has assigned
   to that node's secondary ENIs;
4. `reachable` (`reach=True`, slower): every Ready pod answers a TCP probe from every other
   Ready pod whose namespaces hold no NetworkPolicy (a refusal is an answer: it came back).

Everything is read from outside, as the CLI can: the lab's state, its API, the cloud's
admin state and the agents' sockets; nothing is changed.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from functools import partial
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING, Any

from pyroute2 import NetlinkError

from podlab.cni import protocol
from podlab.datapath import DatapathError, netlink
from podlab.lab.cloud_cli import admin_call
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.fabric import VpcFabric
from podlab.lab.state import LabState

if TYPE_CHECKING:
    from podlab.lab.lab import Lab

PROBE_TIMEOUT = 2.0  # seconds for every reach probe at once
CLOSED_PORT = 9  # probed on a pod that declares no TCP port: its refusal is the answer
AGENT_TIMEOUT = 10.0
POLL = 0.2


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which, about what (pods, nodes, ENIs, addresses), and what
    was seen instead."""

    invariant: str
    objects: tuple[str, ...]
    seen: str

    def __str__(self) -> str:
        return f"{self.invariant}: {', '.join(self.objects)}: {self.seen}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "objects": list(self.objects)}


class InvariantError(LabError, AssertionError):
    """Raised by `check` with every violation; an AssertionError, so pytest shows it as a
    failed check."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__(f"{len(violations)} invariant(s) broken:\n"
                         + "\n".join(f"  {v}" for v in violations))


@dataclass(frozen=True)
class _Pod:
    name: str  # namespace/name
    node: str
    ip: str
    netns: str
    ready: bool
    port: int  # a TCP port it serves, or CLOSED_PORT


def check(lab: Lab | LabState, *, reach: bool = False, within: float = 0.0) -> None:
    """Return once every invariant holds, else raise InvariantError naming every violation
    (after a fault, see `settled`)."""
    if found := settled(lab, reach=reach, within=within):
        raise InvariantError(found)


def settled(lab: Lab | LabState, *, reach: bool = False, within: float = 0.0
            ) -> list[Violation]:
    """No violations as soon as every invariant holds; else the last ones seen once
    `within` seconds passed (checked again every POLL): after a fault a lab converges."""
    deadline = time.monotonic() + within
    while (found := violations(lab, reach=reach)) and time.monotonic() < deadline:
        time.sleep(POLL)  # polling a converging lab, with a deadline
    return found


def violations(lab: Lab | LabState, *, reach: bool = False) -> list[Violation]:
    """Every violation in the lab now (invariants 1-3; 4 with `reach`)."""
    state = lab if isinstance(lab, LabState) else lab.state
    pods, policies = _pods(state)
    cloud = admin_call(state.name, "state")["enis"]
    found = _unique(pods) + _routed(state, pods, cloud) + _agents_agree(state, cloud)
    if reach:
        found += _reachable([p for p in pods
                             if p.ready and p.name.split("/")[0] not in policies])
    return found


def _pods(state: LabState) -> tuple[list[_Pod], set[str]]:
    """Running pods with an address (from the API; from the lab's state in a lab without
    one), and the namespaces holding a NetworkPolicy."""
    if not state.kubeconfig:
        return [_Pod(f"{p.namespace}/{p.name}", p.node, p.ip, p.netns, True, CLOSED_PORT)
                for p in state.pods if p.ip], set()
    from podlab.kubeapi.kinds import BUILTIN  # the API client costs a second to import
    from podlab.lab.kube.manifests import LabApi

    api = LabApi(state.kubeconfig)
    netns = {(p.namespace, p.name): p.netns for p in state.pods}
    pods = []
    for pod in api.list(BUILTIN.resources["pods"]):
        meta, status = pod["metadata"], pod.get("status") or {}
        key = (meta.get("namespace", "default"), meta["name"])
        if status.get("phase") != "Running" or not status.get("podIP") or key not in netns:
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions", []))
        ports = [p["containerPort"] for c in pod["spec"].get("containers", [])
                 for p in c.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
        pods.append(_Pod("/".join(key), pod["spec"].get("nodeName", ""), status["podIP"],
                         netns[key], ready, ports[0] if ports else CLOSED_PORT))
    policies = {p["metadata"].get("namespace", "default")
                for p in api.list(BUILTIN.resources["networkpolicies"])}
    return pods, policies


# -- 1. unique-address ------------------------------------------------------------------

def _unique(pods: list[_Pod]) -> list[Violation]:
    holders: dict[str, list[str]] = defaultdict(list)
    for pod in pods:
        for address in {pod.ip, *_netns_addresses(pod.netns)}:
            holders[address].append(pod.name)
    return [Violation("unique-address", tuple(sorted(names)),
                      f"{address} is held by {len(names)} Running pods")
            for address, names in sorted(holders.items()) if len(names) > 1]


def _netns_addresses(netns: str) -> set[str]:
    """The pod's own IPv4 addresses (not loopback, not link-local); none if it is gone."""
    try:
        with netlink.opened(netns) as ns:
            found = {str(a.get_attr("IFA_ADDRESS")) for a in ns.get_addr(family=socket.AF_INET)}
    except DatapathError:
        return set()
    return {a for a in found if not (ip_address(a).is_loopback or ip_address(a).is_link_local)}


# -- 2. address-routed ------------------------------------------------------------------

def _routed(state: LabState, pods: list[_Pod], cloud: list[dict[str, Any]]) -> list[Violation]:
    owner = {ip["PrivateIpAddress"]: eni for eni in cloud
             for ip in eni["PrivateIpSets"]["PrivateIpSet"]}
    router = VpcFabric(state.name, state.fabric_netns,
                       EventLog(state.dir / "events.jsonl")).routes()
    found = []
    for pod in pods:
        seen = _route_problem(state, pod, owner.get(pod.ip), router.get(pod.ip))
        if seen:
            found.append(Violation("address-routed", (pod.name, pod.ip), seen))
    return found


def _route_problem(state: LabState, pod: _Pod, eni: dict[str, Any] | None,
                   routed_to: str | None) -> str:
    """What keeps the pod's address from reaching the pod, or ""."""
    node = state.node(pod.node)
    if eni is None:
        return "no ENI in the cloud holds it"
    if eni["InstanceId"] != node.instance_id or eni["Status"] != "InUse":
        return (f"its ENI {eni['NetworkInterfaceId']} is {eni['Status']} on "
                f"{eni['InstanceId'] or 'no instance'}, not InUse on {pod.node}")
    if routed_to != eni["NetworkInterfaceId"]:
        return (f"the VPC router sends it to {routed_to or 'nowhere'}, "
                f"not to {eni['NetworkInterfaceId']}")
    try:
        return _node_path(node.netns, node.gateway, pod, eni)
    except DatapathError as e:
        return str(e)


def _node_path(node_netns: str, remote: str, pod: _Pod, eni: dict[str, Any]) -> str:
    """Inside the node: the pod owns the ENI's MAC (ipvlan, exclusive ENI: the ENI delivers
    to it directly), or the node routes between the ENI and the pod's veth both ways and
    answers ARP for the pod on the ENI."""
    mac, eni_id = eni["MacAddress"].lower(), eni["NetworkInterfaceId"]
    with netlink.opened(pod.netns) as ns:
        eth0 = next((link for link in ns.get_links()
                     if pod.ip in {str(a.get_attr("IFA_ADDRESS")) for a in
                                   ns.get_addr(family=socket.AF_INET, index=link["index"])}),
                    None)
    if eth0 is None:
        return "no interface in the pod holds it"
    if (eth0.get_attr("IFLA_ADDRESS") or "").lower() == mac:
        return ""
    with netlink.opened(node_netns) as ns:
        device = next((link for link in ns.get_links()
                       if (link.get_attr("IFLA_ADDRESS") or "").lower() == mac), None)
        if device is None:
            return f"the node has no device with {eni_id}'s MAC {mac}"
        return _veth_path(ns, remote, pod, device, int(eth0.get_attr("IFLA_LINK")))


def _veth_path(ns: Any, remote: str, pod: _Pod, device: Any, peer: int) -> str:
    """The node's side of a veth pod, asked in the node's netns `ns`."""
    name, index = device.get_attr("IFLA_IFNAME"), device["index"]
    inbound = _route_get(ns, dst=pod.ip, src=remote, iif=index)
    if inbound != peer:
        return (f"the node routes it, arriving on {name}, to ifindex {inbound}, "
                f"not to the pod's veth (ifindex {peer})")
    outbound = _route_get(ns, dst=remote, src=pod.ip, iif=peer)
    if outbound != index:
        return (f"the node sends the pod's packets to {remote} out of ifindex "
                f"{outbound}, not its ENI's device {name} (ifindex {index})")
    if not netlink.has_proxy_neighbour(ns, IPv4Address(pod.ip), index):
        return f"the node does not answer ARP for it on {name} (no proxy entry)"
    return ""


def _route_get(ns: Any, **where: Any) -> int | None:
    """The output device the kernel picks for a packet, or None if it has no route."""
    try:
        return int(ns.route("get", **where)[0].get_attr("RTA_OIF"))
    except (NetlinkError, IndexError, TypeError):
        return None


# -- 3. agent-agrees --------------------------------------------------------------------

def _agents_agree(state: LabState, cloud: list[dict[str, Any]]) -> list[Violation]:
    found = []
    for node in state.nodes:
        if not node.agent_socket:
            continue
        try:
            info = protocol.call(node.agent_socket, "info", timeout=AGENT_TIMEOUT)
        except (protocol.AgentUnavailable, protocol.AgentError) as e:
            found.append(Violation("agent-agrees", (node.name,), f"its agent: {e}"))
            continue
        agent = {ip["address"]: (eni["id"], ip["state"], ip["pod"])
                 for eni in info["enis"] for ip in eni["ips"]}
        theirs = {ip["PrivateIpAddress"]: eni["NetworkInterfaceId"] for eni in cloud
                  if eni["Type"] != "Primary" and eni["InstanceId"] == node.instance_id
                  for ip in eni["PrivateIpSets"]["PrivateIpSet"]}
        for address in sorted(set(agent) | set(theirs)):
            mine, cloud_eni = agent.get(address), theirs.get(address)
            if mine is not None and mine[0] == cloud_eni:
                continue
            held = f"{mine[1]} on {mine[0]}" + (f" by {mine[2]}" if mine[2] else "") \
                if mine else "unknown"
            found.append(Violation(
                "agent-agrees", (node.name, address),
                f"the agent's store has it {held}; the cloud has it "
                f"{f'on {cloud_eni}' if cloud_eni else 'on no ENI of this node'}"))
    return found


# -- 4. reachable -----------------------------------------------------------------------

def _sockets(count: int) -> list[socket.socket]:
    return [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]


def _reachable(pods: list[_Pod]) -> list[Violation]:
    """Every ordered pair of distinct pods at once, against one deadline."""
    pending: dict[socket.socket, tuple[_Pod, _Pod]] = {}
    failed: list[tuple[_Pod, _Pod, str]] = []
    selector = selectors.DefaultSelector()
    try:
        for source in pods:
            targets = [t for t in pods if t is not source]
            made = netlink.in_netns(source.netns, partial(_sockets, len(targets)))
            for sock, target in zip(made, targets, strict=True):
                sock.setblocking(False)
                pending[sock] = (source, target)
                code = sock.connect_ex((target.ip, target.port))
                if code not in (0, errno.EINPROGRESS):
                    failed.append((source, target, errno.errorcode.get(code, str(code))))
                    del pending[sock]
                    sock.close()
                else:
                    selector.register(sock, selectors.EVENT_WRITE, sock)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.data
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                source, target = pending.pop(sock)
                if code not in (0, errno.ECONNREFUSED):  # a refusal came back: reached
                    failed.append((source, target, errno.errorcode.get(code, str(code))))
                selector.unregister(sock)
                sock.close()
    finally:
        selector.close()
        for sock, (source, target) in pending.items():
            failed.append((source, target, f"no answer within {PROBE_TIMEOUT:.0f}s"))
            sock.close()
    return [Violation("reachable", (s.name, t.name), f"{t.ip}:{t.port}/tcp: {why}")
            for s, t, why in sorted(failed, key=lambda f: (f[0].name, f[1].name))]

