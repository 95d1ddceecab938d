"""The agent's configuration: a file shaped like Terway's eni_conf, checked on load.

Terway's key names are accepted as they are (`access_id`, `vswitches` by zone,
`vswitch_selection_policy`, `ip_stack`, `idle_ip_reclaim_after`), so a field config can be
pasted into a lab; what podlab adds (paths, endpoints, timings) has defaults that fit a
lab node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The config file says something the agent cannot run with; the message names it."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(value: object, name: str) -> float:
    """Seconds from a number or a Go-style duration ("300ms", "5m")."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ConfigError(f"{name}: {value!r} is not a duration (like 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class AgentConfig:
    """What one node's agent needs to know before it asks metadata who it is."""

    endpoint: str = "100.100.80.1:80"  # the ECS/VPC OpenAPI endpoint
    metadata: str = "100.100.100.200"
    protocol: str = "http"
    access_key_id: str | None = None  # None: RAM-role credentials from metadata
    access_key_secret: str | None = None
    ram_role: str | None = None
    vswitches: dict[str, list[str]] = field(default_factory=dict)  # zone -> vSwitch ids
    security_groups: list[str] = field(default_factory=list)
    min_pool_size: int = 0
    max_pool_size: int = 5
    warm_up_size: int = 0  # idle IPs to hold right after start, before any pod asks
    eni_mode: str = "shared"  # shared: IPs of shared ENIs | exclusive: an ENI per pod
    datapath: str | None = None  # shared ENIs: ipvlan | veth; None: ipvlan if the kernel has it
    vswitch_selection_policy: str = "ordered"  # ordered: most available IPs | random
    idle_ip_reclaim_after: float = 0.0  # 0: idle IPs between min and max are kept
    ip_stack: str = "ipv4"  # ipv4 | dual
    reservation_period: float = 300.0  # how long a fixed-IP pod's address waits for it
    vswitch_cooldown: float = 300.0  # a vSwitch that answered IpNotEnough is skipped this long
    reconcile_period: float = 60.0
    maintain_period: float = 2.0
    attach_timeout: float = 60.0
    attach_first_look: float = 1.0  # after an attach, before the first Describe; then learnt
    batch_window: float = 0.02  # a filler waits this long, so one batch serves a burst
    cloud_deadline: float = 30.0  # retries of one cloud call stop after this long
    alloc_timeout: float = 60.0
    state_dir: Path = Path("/var/lib/podlab/agent")
    socket: Path = Path("/run/podlab/agent.sock")
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    cni_network: str = "podlab"
    metrics_address: str = "127.0.0.1:9464"  # host:port; "" serves no metrics
    eni_tags: dict[str, str] = field(default_factory=dict)
    kube_api: str = ""  # the Kubernetes API URL; "" runs without (GC only through CNI GC)
    node_name: str = ""  # this node's name in that API: the pods watched are its own
    # The agent's bearer token for kube_api, in a file as a DaemonSet pod's service account
    # token is; None sends none.
    kube_token_file: Path | None = None
    kube_ca_file: Path | None = None  # the CA of an https kube_api; None: the system's
    service_cidr: str = ""  # ipvlan/exclusive-ENI pods reach it via the node (service_access)
    # kube-proxy: the node's netfilter serves Services | ebpf: this agent's programs do, on
    # each pod's eth0 and the node's sockets, with their maps pinned in bpf_pin_dir
    service_proxy: str = "kube-proxy"
    bpf_pin_dir: Path | None = None
    # with ebpf, NetworkPolicy too: 1 in N allowed new connections is a flow (0: drops only)
    flow_allow_sampling: int = 0

    def kube_token(self) -> str:
        return self.kube_token_file.read_text().strip() if self.kube_token_file else ""

    @property
    def dual_stack(self) -> bool:
        return self.ip_stack == "dual"

    def check(self) -> AgentConfig:
        if self.min_pool_size < 0 or self.max_pool_size < self.min_pool_size:
            raise ConfigError(f"pool sizes: need 0 <= min_pool_size ({self.min_pool_size}) "
                              f"<= max_pool_size ({self.max_pool_size})")
        if self.eni_mode not in ("shared", "exclusive"):
            raise ConfigError(f"eni_mode: {self.eni_mode!r} is not shared or exclusive")
        if self.vswitch_selection_policy not in ("ordered", "random"):
            raise ConfigError(f"vswitch_selection_policy: {self.vswitch_selection_policy!r} "
                              "is not ordered or random")
        if self.ip_stack not in ("ipv4", "dual"):
            raise ConfigError(f"ip_stack: {self.ip_stack!r} is not ipv4 or dual")
        if (self.access_key_id is None) != (self.access_key_secret is None):
            raise ConfigError("access_key_id and access_key_secret come together (or neither, "
                              "to use the instance's RAM role)")
        if self.service_proxy not in ("kube-proxy", "ebpf"):
            raise ConfigError(f"service_proxy: {self.service_proxy!r} is not kube-proxy or ebpf")
        if self.service_proxy == "ebpf" and not (self.bpf_pin_dir and self.kube_api):
            raise ConfigError("service_proxy ebpf needs bpf_pin_dir (in a bpffs) and kube_api "
                              "(its Services and EndpointSlices)")
        if self.flow_allow_sampling < 0:
            raise ConfigError(f"flow_allow_sampling: {self.flow_allow_sampling} is not >= 0 "
                              "(1 in N allowed connections is a flow; 0: none)")
        if self.kube_api and not self.node_name:
            raise ConfigError("kube_api needs node_name: the agent watches its node's pods")
        return self

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgentConfig:
        raw = dict(raw)
        aliases = {"access_id": "access_key_id", "access_secret": "access_key_secret",
                   "security_group": "security_groups"}
        for old, new in aliases.items():
            if old in raw:
                raw[new] = raw.pop(old)
        if isinstance(raw.get("security_groups"), str):
            raw["security_groups"] = [raw["security_groups"]]
        raw.pop("version", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {sorted(known)}")
        for key in ("idle_ip_reclaim_after", "reservation_period", "vswitch_cooldown",
                    "reconcile_period", "maintain_period", "attach_timeout", "attach_first_look",
                    "batch_window", "cloud_deadline",
                    "alloc_timeout"):
            if key in raw:
                raw[key] = duration(raw[key], key)
        for key in ("state_dir", "socket", "cni_conf_dir", "kube_token_file", "kube_ca_file",
                    "bpf_pin_dir"):
            if raw.get(key) is not None:
                raw[key] = Path(raw[key])
        try:
            return cls(**raw).check()
        except TypeError as e:
            raise ConfigError(str(e)) from e

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        try:
            raw = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") \
                else json.loads(path.read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
