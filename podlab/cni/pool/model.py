"""The pool's values and errors: what a pod asks with, what it gets, why it may not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podlab.cni.cloudapi import Quotas

NODE_TAG = "podlab.io/node"  # on every ENI an agent creates: the instance it is for
BATCH = 10  # addresses per AssignPrivateIpAddresses, and on a new ENI
UNASSIGN_BATCH = 50
BLOCK_AFTER_CAPACITY = 5.0  # seconds allocs fail fast after a quota or exhaustion answer


class CapacityError(RuntimeError):
    """No address can be had now; the message names the limit that was hit."""


class BusyError(RuntimeError):
    """The pool could not serve in time (cloud slow or failing); try again later."""


@dataclass(frozen=True)
class NodeFacts:
    instance_id: str
    instance_type: str
    zone: str
    primary_vswitch: str
    quotas: Quotas


@dataclass(frozen=True)
class PodRef:
    pod: str  # namespace/name
    container: str = ""
    reserve: float = 0.0  # seconds the address waits for this pod after release


@dataclass(frozen=True)
class Lease:
    """What a pod gets: its address and the ENI and vSwitch it lives on."""

    pod: str
    ip: str
    ipv6: str | None
    eni_id: str
    mac: str
    vswitch_id: str
    cidr: str
    gateway: str
    exclusive: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
