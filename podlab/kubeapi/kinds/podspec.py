"""The pod spec's defaults and validation, shared by Pods and the pod templates of
StatefulSets and Deployments."""

from __future__ import annotations

from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.defaults import default_protocols
from podlab.kubeapi.validation import (
    Errors,
    as_dict,
    as_list,
    dicts,
    ip_address,
    port_number,
    protocol,
    validate_labels,
)

RESTART_POLICIES = ("Always", "Never", "OnFailure")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
# Upstream's limits of a pod's resolv.conf, which kubelet applies to what it merges too.
MAX_DNS_NAMESERVERS, MAX_DNS_SEARCH_PATHS, MAX_DNS_SEARCH_CHARS = 3, 32, 2048


def default_pod_spec(spec: dict[str, Any]) -> None:
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or ():
            if not isinstance(c, dict):
                continue
            default_protocols(c.get("ports"))
            image = str(c.get("image") or "")
            tag = image.rsplit("/", 1)[-1].partition("@")[0]
            latest = ":" not in tag or tag.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
    spec.setdefault("restartPolicy", "Always")
    if not spec.get("dnsPolicy"):  # Go's defaulting: "" is unset
        spec["dnsPolicy"] = "ClusterFirst"
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})


def _validate_container(errs: Errors, path: str, container: Any, seen: set[str]) -> None:
    c = as_dict(container)
    name = c.get("name")
    if not name:
        errs.required(f"{path}.name")
    elif errs.syntax(f"{path}.name", name, names.dns1123_label):
        if name in seen:
            errs.duplicate(f"{path}.name", name)
        seen.add(name)
    if not c.get("image"):
        errs.required(f"{path}.image")
    port_names: set[str] = set()
    for i, port in enumerate(dicts(c.get("ports"))):
        p = f"{path}.ports[{i}]"
        port_number(errs, f"{p}.containerPort", port.get("containerPort"))
        port_number(errs, f"{p}.hostPort", port.get("hostPort"), required=False, low=0)
        protocol(errs, f"{p}.protocol", port.get("protocol"))
        if (pname := port.get("name")) and errs.syntax(f"{p}.name", pname, names.port_name):
            if pname in port_names:
                errs.duplicate(f"{p}.name", pname)
            port_names.add(pname)
    for i, env in enumerate(as_list(c.get("env"))):
        if not as_dict(env).get("name"):
            errs.required(f"{path}.env[{i}].name")


def validate_pod_spec(errs: Errors, path: str, spec: Any) -> None:
    spec = as_dict(spec)
    if not as_list(spec.get("containers")):
        errs.required(f"{path}.containers")
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, container in enumerate(as_list(spec.get(key))):
            _validate_container(errs, f"{path}.{key}[{i}]", container, seen)
    if node := spec.get("nodeName"):
        errs.syntax(f"{path}.nodeName", node, names.dns1123_subdomain)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in RESTART_POLICIES:
        errs.unsupported(f"{path}.restartPolicy", policy, RESTART_POLICIES)
    validate_labels(errs, f"{path}.nodeSelector", spec.get("nodeSelector"))
    _validate_dns(errs, path, spec)


def _validate_dns(errs: Errors, path: str, spec: dict[str, Any]) -> None:
    """Upstream's validateDNSPolicy, validatePodDNSConfig and validateHostAliases, and the
    hostname and subdomain a pod's DNS names are made of."""
    policy = spec.get("dnsPolicy")
    if policy is not None and policy not in DNS_POLICIES:
        errs.unsupported(f"{path}.dnsPolicy", policy, DNS_POLICIES)
    for key in ("hostname", "subdomain"):
        if value := spec.get(key):
            errs.syntax(f"{path}.{key}", value, names.dns1123_label)
    for i, alias in enumerate(dicts(spec.get("hostAliases"))):
        ip_address(errs, f"{path}.hostAliases[{i}].ip", alias.get("ip"))
        for j, host in enumerate(as_list(alias.get("hostnames"))):
            errs.syntax(f"{path}.hostAliases[{i}].hostnames[{j}]", host, names.dns1123_subdomain)
    _validate_dns_config(errs, f"{path}.dnsConfig", spec.get("dnsConfig"), policy)


def _validate_dns_config(errs: Errors, p: str, config: Any, policy: Any) -> None:
    if policy == "None":
        if config is None:
            errs.required(p, "must provide `dnsConfig` when `dnsPolicy` is None")
            return
        if not as_list(as_dict(config).get("nameservers")):
            errs.required(f"{p}.nameservers",
                          "must provide at least one DNS nameserver when `dnsPolicy` is None")
            return
    config = as_dict(config)
    nameservers = as_list(config.get("nameservers"))
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        errs.invalid(f"{p}.nameservers", nameservers,
                     f"must not have more than {MAX_DNS_NAMESERVERS} nameservers")
    for i, ip in enumerate(nameservers):
        ip_address(errs, f"{p}.nameservers[{i}]", ip)
    searches = as_list(config.get("searches"))
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        errs.invalid(f"{p}.searches", searches,
                     f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths")
    if len(" ".join(map(str, searches))) > MAX_DNS_SEARCH_CHARS:
        errs.invalid(f"{p}.searches", searches, f"must not have more than "
                     f"{MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list")
    for i, search in enumerate(searches):  # a trailing dot is fine
        value = search.removesuffix(".") if isinstance(search, str) else search
        errs.syntax(f"{p}.searches[{i}]", value, names.dns1123_subdomain)
    for i, option in enumerate(as_list(config.get("options"))):
        if not as_dict(option).get("name"):
            errs.required(f"{p}.options[{i}]", "must not be empty")
