"""Identity numbers: the same on every node and after a restart, since each is a hash
of what it stands for, and a collision is settled by probing upwards in the sorted
order of what collided, which every node sees alike."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from typing import TypeVar

from podlab.cni.policy.objects import Labels
from podlab.datapath.bpf.policy_model import FIRST_CIDR_IDENTITY, FIRST_POD_IDENTITY

Key = TypeVar("Key")
IdentityKey = tuple[str, Labels, Labels]  # namespace, pod labels, namespace labels
CIDR_END = 1 << 32


def assign(keys: Iterable[Key], text: Callable[[Key], str], first: int,
           end: int) -> dict[Key, int]:
    """A number in [first, end) per key: its hash, or the next free one above it."""
    span = end - first
    taken: set[int] = set()
    numbers: dict[Key, int] = {}
    for key in sorted(set(keys), key=text):
        digest = hashlib.sha256(text(key).encode()).digest()
        slot = int.from_bytes(digest[:8], "big") % span
        while first + slot in taken:
            slot = (slot + 1) % span
        taken.add(first + slot)
        numbers[key] = first + slot
    return numbers


def describe(key: IdentityKey) -> str:
    """'ns=x pod=a app=web': the namespace and the pod's labels (the namespace's labels
    are in the hash but not in the name, which would grow long)."""
    namespace, labels, _ = key
    return " ".join([f"ns={namespace}", *(f"{k}={v}" for k, v in labels)])


def _canonical(key: IdentityKey) -> str:
    namespace, labels, ns_labels = key
    return "\0".join([namespace, *(f"{k}={v}" for k, v in labels), "",
                      *(f"{k}={v}" for k, v in ns_labels)])


def pod_identities(keys: Iterable[IdentityKey]) -> dict[IdentityKey, int]:
    return assign(keys, _canonical, FIRST_POD_IDENTITY, FIRST_CIDR_IDENTITY)


def describe_cidr(prefix: ipaddress.IPv4Network) -> str:
    """'cidr:10.0.0.0/8': what a CIDR identity stands for, its hash's input too."""
    return f"cidr:{prefix}"


def cidr_identities(prefixes: Iterable[ipaddress.IPv4Network]
                    ) -> dict[ipaddress.IPv4Network, int]:
    return assign(prefixes, describe_cidr, FIRST_CIDR_IDENTITY, CIDR_END)
