"""An agent's pool against the in-process fake cloud, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podlab.cni.cloudapi import CloudApi
from podlab.cni.config import AgentConfig
from podlab.cni.crashpoints import CrashHook, never
from podlab.cni.identity import Credentials
from podlab.cni.pool import NodeFacts, Pool
from podlab.cni.store import Store
from podlab.fakecloud.metadata import snapshot
from podlab.fakecloud.topology import Node
from podlab.fakecloud.wire import Endpoint


@dataclass
class Clock:
    """Time that passes only when told to (sleeps advance it)."""

    now: float = 1_000_000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def node_of(endpoint: Endpoint, name: str = "n1") -> Node:
    return next(n for n in endpoint.cloud.topology.nodes if n.name == name)


def make_pool(endpoint: Endpoint, state: Path, clock: Clock, *, node: str = "n1",
              crash: CrashHook = never, workers: int = 1, **config: Any) -> Pool:
    n = node_of(endpoint, node)
    settings: dict[str, Any] = {"endpoint": "ecs.podlab.local", "access_key_id": "podlab",
                                "access_key_secret": "podlab-secret", "state_dir": state,
                                "cloud_deadline": 20.0, **config}
    cfg = AgentConfig.from_dict(settings)
    cloud = CloudApi(cfg.endpoint, endpoint.cloud.topology.region,
                     Credentials("podlab", "podlab-secret"), deadline=cfg.cloud_deadline,
                     sleep=clock.sleep, clock=clock, seed=0)
    facts = NodeFacts(n.instance_id, n.instance_type, n.zone, n.vswitch.id,
                      cloud.quotas(n.instance_type))
    return Pool(cfg, cloud, Store(state / "agent.db"), facts, clock=clock, sleep=clock.sleep,
                crash=crash, workers=workers, seed=0, gateways=metadata_gateways(endpoint, n))


def metadata_gateways(endpoint: Endpoint, node: Node) -> Callable[[str], str | None]:
    """What the agent asks metadata: the gateway of an ENI attached to `node`, by MAC."""
    def gateway(mac: str) -> str | None:
        eni = snapshot(endpoint.cloud)[node.instance_id]["macs"].get(mac)
        return None if eni is None else str(eni["gateway"])
    return gateway
