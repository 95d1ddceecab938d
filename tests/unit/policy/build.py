"""API objects as the official client's sanitize_for_serialization gives them, built
tersely for the policy tests."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
NODES = {"n1": "192.168.0.1", "n2": "192.168.0.2"}


def namespace(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels}}


def pod(namespace: str, name: str, ip: str | None, *, node: str = "n1",
        ports: tuple[tuple[str, str, int], ...] = (), labels: dict[str, str] | None = None,
        **status: Any) -> Obj:
    """`ports`: (name, protocol, containerPort) of its one container."""
    return {
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"pod": name} if labels is None else labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
            {"name": n, "protocol": p, "containerPort": c} for n, p, c in ports]}]},
        "status": {"phase": "Running", **({"podIP": ip} if ip else {}), **status}}


def policy(namespace: str, name: str, selector: Obj | None = None, *,
           ingress: list[Obj] | None = None, egress: list[Obj] | None = None,
           types: list[str] | None = None) -> Obj:
    spec: Obj = {"podSelector": selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def labels(**pairs: str) -> Obj:
    return {"matchLabels": pairs}
