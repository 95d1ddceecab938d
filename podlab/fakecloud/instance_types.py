"""The ECS instance-type catalog: the ENI and IP quotas a pod network lives within.

Values follow Alibaba Cloud's instance-family tables (EniQuantity,
EniPrivateIpAddressQuantity, EniIpv6AddressQuantity, EniTotalQuantity) for the families a
Terway node commonly runs on. They were written from those tables without a live
DescribeInstanceTypes to check against (no cloud account here): correct a row here when a
real answer differs, and the quota tests follow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    """One row of DescribeInstanceTypes, reduced to what networking needs."""

    id: str
    family: str
    cpu_cores: int
    memory_gib: float
    eni_quantity: int
    eni_private_ip_quantity: int
    eni_ipv6_quantity: int
    eni_total_quantity: int


# (size, vCPU, ENIs, IPv4 per ENI, IPv6 per ENI, ENIs incl. trunk-attached)
_G7_SIZES = [
    ("large", 2, 3, 6, 6, 6),
    ("xlarge", 4, 4, 15, 15, 8),
    ("2xlarge", 8, 4, 15, 15, 16),
    ("3xlarge", 12, 8, 15, 15, 24),
    ("4xlarge", 16, 8, 30, 30, 32),
    ("6xlarge", 24, 8, 30, 30, 48),
    ("8xlarge", 32, 8, 30, 30, 64),
]
_G6_SIZES = [
    ("large", 2, 2, 6, 1, 2),
    ("xlarge", 4, 3, 10, 1, 3),
    ("2xlarge", 8, 4, 10, 1, 4),
    ("3xlarge", 12, 6, 10, 1, 6),
    ("4xlarge", 16, 8, 20, 1, 8),
    ("6xlarge", 24, 8, 20, 1, 8),
    ("8xlarge", 32, 8, 20, 1, 8),
]
# Families of one generation share ENI quotas; memory is what differs.
_FAMILIES = {
    "ecs.g6": (_G6_SIZES, 4.0),
    "ecs.g7": (_G7_SIZES, 4.0),
    "ecs.c7": (_G7_SIZES, 2.0),
    "ecs.r7": (_G7_SIZES, 8.0),
}


def _catalog() -> dict[str, InstanceType]:
    types = {}
    for family, (sizes, gib_per_core) in _FAMILIES.items():
        for size, cpu, enis, ipv4, ipv6, total in sizes:
            type_id = f"{family}.{size}"
            types[type_id] = InstanceType(
                id=type_id,
                family=family,
                cpu_cores=cpu,
                memory_gib=cpu * gib_per_core,
                eni_quantity=enis,
                eni_private_ip_quantity=ipv4,
                eni_ipv6_quantity=ipv6,
                eni_total_quantity=total,
            )
    return types


INSTANCE_TYPES: dict[str, InstanceType] = _catalog()
