"""A pod's hostname, /etc/resolv.conf and /etc/hosts, as kubelet makes them
(pkg/kubelet/network/dns/dns.go, kubelet_pods.go) and containerd writes them.

`dnsPolicy`:
- `ClusterFirst` (the default; `ClusterFirstWithHostNet` too): the cluster DNS (kubelet's
  `--cluster-dns`), search `<ns>.svc.<zone> svc.<zone> <zone>` then the node's own search,
  `options ndots:5`. Without a cluster DNS (a lab without DNS), the node's, as kubelet
  falls back (and a hostNetwork pod's is the node's too).
- `Default`: the node's resolv.conf (its nameservers, search and options).
- `None`: nothing but `spec.dnsConfig`.
`spec.dnsConfig` is merged into the others: nameservers and searches appended without
repeats, options by name (the pod's win). Then the limits: 3 nameservers, 32 search domains
of up to 253 characters, 2048 characters in all, extra ones dropped from the end. The API
refuses a dnsConfig over them (`podlab.kubeapi.kinds.podspec`); these apply to the merge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podlab.kubeapi.kinds.podspec import (
    MAX_DNS_NAMESERVERS,
    MAX_DNS_SEARCH_CHARS,
    MAX_DNS_SEARCH_PATHS,
)
from podlab.lab.constants import CLUSTER_DOMAIN, KUBE_DNS_IP, NODE_LOCAL_DNS_IP
from podlab.lab.sandbox import etc_dir

log = logging.getLogger(__name__)
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
MAX_DOMAIN = 253  # longer search domains make glibc 2.28 abort(); kubelet drops them
MAX_HOSTNAME = 63
CLUSTER_OPTIONS = ("ndots:5",)
# The lab's `dns_nameserver` setting: the nameserver of ClusterFirst pods (--cluster-dns).
CLUSTER_DNS = {"nodelocal": NODE_LOCAL_DNS_IP, "cluster": KUBE_DNS_IP}


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        """The file as containerd writes it: search, nameservers, options."""
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {ip}" for ip in self.nameservers]
        lines += [f"options {' '.join(self.options)}"] if self.options else []
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        """kubelet's reading of its `--resolv-conf`: the last search line wins, "." goes."""
        nameservers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if len(words) < 2:
                continue
            if words[0] == "nameserver":
                nameservers.append(words[1])
            elif words[0] == "search":
                searches = [s.rstrip(".") for s in words[1:] if s != "."]
            elif words[0] == "options":
                options += words[1:]
        return cls(tuple(nameservers), tuple(searches), tuple(options))


def node_resolv_conf(netns: str) -> ResolvConf:
    """What a process on the node reads: the node's own file (/etc/netns/<netns>, the VPC's
    resolvers when the lab has DNS), else the host's."""
    own = etc_dir(netns) / "resolv.conf"
    return ResolvConf.parse((own if own.exists() else HOST_RESOLV_CONF).read_text())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(base: Sequence[str], pod: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """By name, the pod's last: `ndots:5` and {name: ndots, value: "2"} make `ndots:2`."""
    merged: dict[str, str] = {}
    for option in base:
        name, _, value = option.partition(":")
        merged[name] = value
    for given in pod:
        merged[str(given.get("name", ""))] = str(given.get("value") or "")
    return tuple(f"{k}:{v}" if v else k for k, v in merged.items())


def _fit_searches(searches: Sequence[str]) -> tuple[str, ...]:
    fitted = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= MAX_DOMAIN]
    while len(" ".join(fitted)) > MAX_DNS_SEARCH_CHARS:
        fitted.pop()
    return tuple(fitted)


def pod_resolv_conf(pod: Mapping[str, Any], cluster_dns: str, node: ResolvConf,
                    domain: str = CLUSTER_DOMAIN) -> ResolvConf:
    """The pod's resolv.conf (see the module docstring); `cluster_dns` "" is none."""
    spec = pod["spec"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    cluster = (policy == "ClusterFirstWithHostNet"
               or (policy == "ClusterFirst" and not spec.get("hostNetwork")))
    if policy == "None":
        conf = ResolvConf()
    elif cluster and cluster_dns:
        ns = pod["metadata"]["namespace"]
        conf = ResolvConf((cluster_dns,),
                          _unique([f"{ns}.svc.{domain}", f"svc.{domain}", domain,
                                   *node.searches]),
                          CLUSTER_OPTIONS)
    else:
        conf = node
    extra = spec.get("dnsConfig") or {}
    conf = ResolvConf(_unique([*conf.nameservers, *(extra.get("nameservers") or ())]),
                      _unique([*conf.searches, *(extra.get("searches") or ())]),
                      _merge_options(conf.options, extra.get("options") or ()))
    fitted = ResolvConf(conf.nameservers[:MAX_DNS_NAMESERVERS], _fit_searches(conf.searches),
                        conf.options)
    if fitted != conf:
        meta = pod["metadata"]
        log.warning("pod %s/%s: DNS limits exceeded (3 nameservers, 32 search paths, 2048 "
                    "characters); applied: nameservers %s, search %s", meta["namespace"],
                    meta["name"], " ".join(fitted.nameservers), " ".join(fitted.searches))
    return fitted


def pod_hostname(pod: Mapping[str, Any]) -> str:
    """`spec.hostname`, else the pod's name, cut to 63 characters without a trailing '-'
    or '.' (kubelet's truncatePodHostnameIfNeeded)."""
    name = str(pod["spec"].get("hostname") or pod["metadata"]["name"])
    return name[:MAX_HOSTNAME].rstrip("-.") if len(name) > MAX_HOSTNAME else name


def pod_hosts(pod: Mapping[str, Any], ips: Sequence[str], domain: str = CLUSTER_DOMAIN
              ) -> str:
    """The kubelet-managed /etc/hosts: localhost, the pod's addresses under its hostname
    (after its FQDN `<hostname>.<subdomain>.<ns>.svc.<zone>` when it has a subdomain, so
    `hostname -f` prints that), then `spec.hostAliases`."""
    spec, host = pod["spec"], pod_hostname(pod)
    names = host
    if subdomain := spec.get("subdomain"):
        names = f"{host}.{subdomain}.{pod['metadata']['namespace']}.svc.{domain}\t{host}"
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters",
             *(f"{ip}\t{names}" for ip in ips)]
    if aliases := spec.get("hostAliases"):
        lines += ["", "# Entries added by HostAliases."]
        lines += ["\t".join([a["ip"], *(a.get("hostnames") or ())]) for a in aliases]
    return "".join(line + "\n" for line in lines)


def pod_files(pod: Mapping[str, Any], ips: Sequence[str], cluster_dns: str,
              node: ResolvConf) -> dict[str, str]:
    """What the pod's processes read in /etc: {file name: text}."""
    return {"resolv.conf": pod_resolv_conf(pod, cluster_dns, node).render(),
            "hosts": pod_hosts(pod, ips)}
