"""A node netns with pods on veth pairs, the programs on every pod's eth0: a client and three
backends for the LB (`lb`), pods a, b, c and the policy maps for NetworkPolicy (`pol`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podlab.datapath.bpf import PolicyMaps, PolicyStats, Programs, ServiceMaps
from podlab.datapath.bpf.policy_model import (
    FIRST_POD_IDENTITY,
    HOST_IDENTITY,
    Endpoint,
    PolicyState,
    Rule,
)
from tests.e2e.bpf.world import World

pytest.register_assert_rewrite("tests.e2e.bpf.world")
BACKENDS = ("b1", "b2", "b3")


@dataclass
class Setup:
    world: World
    programs: Programs
    maps: ServiceMaps


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def _attached(world: World) -> Programs:
    """The programs, on every pod's eth0."""
    programs = world.programs()
    for pod in world.pods.values():
        programs.attach(pod.netns, "eth0")
    return programs


@pytest.fixture
def lb(world: World) -> Setup:
    """client + b1..b3, each backend serving TCP and UDP on 8080, the programs attached."""
    for name in ("client", *BACKENDS):
        world.add_pod(name)
    for name in BACKENDS:
        world.serve(name)
    return Setup(world, _attached(world), world.service_maps())


POLICY_PODS = ("a", "b", "c")
Rules = dict[str, frozenset[Rule]]


@dataclass
class PolicySetup:
    world: World
    programs: Programs
    maps: PolicyMaps
    services: ServiceMaps

    def identity(self, pod: str) -> int:
        return FIRST_POD_IDENTITY + self.world.pods[pod].index

    def ip(self, pod: str) -> str:
        return self.world.pods[pod].ip

    def state(self, *, ingress: Rules | None = None, egress: Rules | None = None,
              cidrs: dict[str, int] | None = None, host: bool = True) -> PolicyState:
        """Every pod its identity (and the router's addresses the host's, unless `host` is
        False); `ingress`/`egress`: pod -> rules (absent: not isolated)."""
        pods = {p.ip: self.identity(name) for name, p in self.world.pods.items()}
        if host:
            pods |= {p.gateway: HOST_IDENTITY for p in self.world.pods.values()}
        ingress, egress = ingress or {}, egress or {}
        endpoints = {p.ip: Endpoint(p.ip, self.identity(name), ingress.get(name),
                                    egress.get(name))
                     for name, p in self.world.pods.items()}
        return PolicyState(pods=pods, cidrs=cidrs or {}, endpoints=endpoints)

    def sync(self, ingress: Rules | None = None, egress: Rules | None = None,
             cidrs: dict[str, int] | None = None, host: bool = True) -> PolicyStats:
        return self.maps.sync(self.state(ingress=ingress, egress=egress, cidrs=cidrs, host=host))


@pytest.fixture
def pol(world: World) -> PolicySetup:
    """Pods a, b, c, each serving TCP and UDP on 8080, the programs on every eth0."""
    for name in POLICY_PODS:
        world.add_pod(name)
        world.serve(name)
    programs = _attached(world)  # loads the programs, and so pins the maps
    maps = PolicyMaps(world.pin_dir)
    world.cleanups.append(maps.close)
    return PolicySetup(world, programs, maps, world.service_maps())
