"""Defaulting, as the API server does it on every write, so readers see complete objects.

Only the defaults that the lab and kubectl's columns look at: protocols, service type and
target ports, pod policies, workload replicas and strategies, policy types of network policies.
"""

from __future__ import annotations

from typing import Any


def _ports(ports: Any) -> None:
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or ():
            if not isinstance(c, dict):
                continue
            _ports(c.get("ports"))
            image = str(c.get("image") or "")
            tag = image.rsplit("/", 1)[-1].partition("@")[0]
            latest = ":" not in tag or tag.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})


def default_service(spec: dict[str, Any]) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")


def default_statefulset(spec: dict[str, Any]) -> None:
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                       "rollingUpdate": {"partition": 0}})
    _default_workload(spec)


def default_deployment(spec: dict[str, Any]) -> None:
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": "25%", "maxUnavailable": "25%"}})
    _default_workload(spec)


def _default_workload(spec: dict[str, Any]) -> None:
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def default_network_policy(spec: dict[str, Any]) -> None:
    spec.setdefault("podSelector", {})
    if "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or ():
            if isinstance(rule, dict):
                _ports(rule.get("ports"))


def apply_defaults(resource: str, obj: dict[str, Any]) -> None:
    """Fill in `obj`'s defaults in place."""
    spec = obj.get("spec")
    if resource == "pods" and isinstance(spec, dict):
        default_pod_spec(spec)
    elif resource == "services" and isinstance(spec, dict):
        default_service(spec)
    elif resource == "statefulsets" and isinstance(spec, dict):
        default_statefulset(spec)
    elif resource == "deployments" and isinstance(spec, dict):
        default_deployment(spec)
    elif resource == "networkpolicies":
        default_network_policy(obj.setdefault("spec", {}))
    elif resource == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif resource == "endpointslices":
        _ports(obj.get("ports"))
    elif resource == "endpoints":
        for subset in obj.get("subsets") or ():
            if isinstance(subset, dict):
                _ports(subset.get("ports"))


def initial_status(resource: str, given: Any) -> Any:
    """The status a new object starts with: clients cannot set it on create, except nodes'."""
    if resource == "nodes":
        return given if isinstance(given, dict) else {}
    return {"pods": {"phase": "Pending"},
            "namespaces": {"phase": "Active"},
            "services": {"loadBalancer": {}},
            "statefulsets": {"replicas": 0, "availableReplicas": 0},
            "deployments": {}}.get(resource)
