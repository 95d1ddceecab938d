"""A node netns with a client pod and three backend pods, the programs on every pod's eth0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podlab.datapath.bpf import Programs, ServiceMaps
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


@pytest.fixture
def lb(world: World) -> Setup:
    """client + b1..b3, each backend serving TCP and UDP on 8080, the programs attached."""
    for name in ("client", *BACKENDS):
        world.add_pod(name)
    for name in BACKENDS:
        world.serve(name)
    programs = world.programs()
    for pod in world.pods.values():
        programs.attach(pod.netns, "eth0")
    return Setup(world, programs, world.service_maps())
