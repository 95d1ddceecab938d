"""Node backends, registered by kind (containerlab's shape): `netns` now, `docker` later."""

from __future__ import annotations

from collections.abc import Callable

from podlab.lab.backends.base import NodeBackend
from podlab.lab.backends.netns import NetnsBackend
from podlab.lab.errors import LabError

BACKENDS: dict[str, Callable[[], NodeBackend]] = {"netns": NetnsBackend}


def backend(kind: str) -> NodeBackend:
    try:
        return BACKENDS[kind]()
    except KeyError:
        raise LabError(f"unknown node backend {kind!r}; have {sorted(BACKENDS)}") from None


__all__ = ["BACKENDS", "NodeBackend", "backend"]
