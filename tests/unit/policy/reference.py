"""Kubernetes' NetworkPolicy semantics, evaluated on the API objects themselves, written
from the API reference and the concept page (kubernetes.io/docs/concepts/services-
networking/network-policies), and from nothing the compiler does:

- a pod is isolated for a direction when a policy of its namespace selects it and has
  that direction in policyTypes (default: Ingress, plus Egress if it has egress rules);
- a connection is allowed when the source's egress and the destination's ingress both
  allow it; an isolated side allows what the union of its policies' rules allows;
- a rule matches when its peers (`from`/`to`; empty or missing: every peer) and its ports
  (empty or missing: every port) both match;
- a peer is pods by podSelector in the policy's namespace, or in the namespaces of its
  namespaceSelector (both in one peer: pods matching the first in namespaces matching the
  second), or an ipBlock's cidr without its excepts (which pod addresses match too);
- a port is a protocol (default TCP) and a number, a range (endPort), a name (the
  container port of that name and protocol of the pod at the destination, for ingress
  the selected pod, for egress the peer), or none (every port of the protocol);
- traffic to and from the pod's own node is always allowed; a pod reaching itself too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


def selector_matches(selector: Obj, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: every matchLabels pair and every expression holds."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        holds = {"In": key in labels and labels[key] in values,
                 "NotIn": key not in labels or labels[key] not in values,
                 "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not holds:
            return False
    return True


@dataclass(frozen=True)
class Cluster:
    """The objects (plain dicts), and each node's own addresses."""

    pods: list[Obj]
    namespaces: list[Obj]
    policies: list[Obj]
    node_ips: Mapping[str, Collection[str]]

    def pod_at(self, ip: str) -> Obj | None:
        """The running pod-network pod with address `ip`."""
        for pod in self.pods:
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            if status.get("podIP") == ip and not spec.get("hostNetwork") \
                    and status.get("phase") not in ("Succeeded", "Failed"):
                return pod
        return None

    def namespace_labels(self, name: str) -> dict[str, str]:
        """Its labels, with the kubernetes.io/metadata.name the API server sets."""
        for ns in self.namespaces:
            if ns["metadata"]["name"] == name:
                return {**(ns["metadata"].get("labels") or {}),
                        "kubernetes.io/metadata.name": name}
        return {"kubernetes.io/metadata.name": name}

    def node_of(self, pod: Obj) -> Collection[str]:
        return self.node_ips.get(pod["spec"].get("nodeName", ""), ())


def _policy_types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _selecting(cluster: Cluster, pod: Obj, policy_type: str) -> list[Obj]:
    namespace = pod["metadata"]["namespace"]
    return [p for p in cluster.policies
            if p["metadata"]["namespace"] == namespace
            and policy_type in _policy_types(p)
            and selector_matches(p["spec"].get("podSelector") or {},
                                 pod["metadata"].get("labels") or {})]


def _peer_matches(cluster: Cluster, peer: Obj, policy_ns: str, ip: str) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"], strict=False) and not any(
            address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
    pod = cluster.pod_at(ip)
    if pod is None:
        return False
    namespace = pod["metadata"]["namespace"]
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], cluster.namespace_labels(namespace)):
            return False
    elif namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector") or {}, pod["metadata"].get("labels") or {})


def _port_matches(entry: Obj, target: Obj | None, protocol: str, port: int) -> bool:
    """`target`: the pod whose named ports a name refers to (None: no pod there)."""
    if entry.get("protocol", "TCP") != protocol:
        return False
    number = entry.get("port")
    if number is None:
        return True
    if isinstance(number, str):
        return target is not None and any(
            p.get("name") == number and p.get("protocol", "TCP") == protocol
            and p["containerPort"] == port
            for c in target["spec"].get("containers") or [] for p in c.get("ports") or [])
    end = entry.get("endPort") or number
    return bool(number <= port <= end)


@dataclass(frozen=True)
class _Probe:
    """A connection as one side sees it: the peer's address, the pod whose named ports
    apply (the destination), the protocol and port."""

    peer: str
    target: Obj | None
    protocol: str
    port: int


def _rules_allow(cluster: Cluster, policies: list[Obj], direction: str, probe: _Probe) -> bool:
    peers_key = "from" if direction == "ingress" else "to"
    for policy in policies:
        for rule in policy["spec"].get(direction) or []:
            peers, ports = rule.get(peers_key), rule.get("ports")
            if peers and not any(_peer_matches(cluster, p, policy["metadata"]["namespace"],
                                               probe.peer) for p in peers):
                continue
            if not ports or any(_port_matches(e, probe.target, probe.protocol, probe.port)
                                for e in ports):
                return True
    return False


def _side(cluster: Cluster, local: str, direction: str, probe: _Probe) -> bool:
    """What the pod at `local` says for `direction` (an address that is no pod says yes)."""
    pod = cluster.pod_at(local)
    if pod is None or probe.peer in cluster.node_of(pod):
        return True
    policies = _selecting(cluster, pod, direction.capitalize())
    return not policies or _rules_allow(cluster, policies, direction, probe)


def egress_allowed(cluster: Cluster, src: str, dst: str, protocol: str, port: int) -> bool:
    """The source's egress; named ports are the destination pod's."""
    return _side(cluster, src, "egress", _Probe(dst, cluster.pod_at(dst), protocol, port))


def ingress_allowed(cluster: Cluster, src: str, dst: str, protocol: str, port: int) -> bool:
    """The destination's ingress; named ports are its own."""
    return _side(cluster, dst, "ingress", _Probe(src, cluster.pod_at(dst), protocol, port))


def allowed(cluster: Cluster, src: str, dst: str, protocol: str, port: int) -> bool:
    """A new connection from address `src` to `dst`; protocol "TCP", "UDP", "SCTP" or
    "ICMP" (which no port entry names, so only rules without ports allow it)."""
    return src == dst or (egress_allowed(cluster, src, dst, protocol, port)
                          and ingress_allowed(cluster, src, dst, protocol, port))
