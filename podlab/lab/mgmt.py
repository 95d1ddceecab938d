"""Management subnets: each lab gets its own /30 from 198.18.0.0/15 (RFC 2544, never routed),
so labs with identical VPC CIDRs still have distinct paths from the host."""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute

from podlab.lab.errors import LabError
from podlab.lab.state import LabState, MgmtState

MGMT_POOL = ipaddress.IPv4Network("198.18.0.0/15")
MGMT_PREFIX = 30


def allocate_mgmt(lab: str) -> MgmtState:
    """The first /30 no lab's state and no root-netns address uses; call under the run lock."""
    used = {ipaddress.IPv4Interface(f"{s.mgmt.host_ip}/{MGMT_PREFIX}").network
            for s in LabState.all() if s.mgmt}
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            ip = ipaddress.IPv4Address(addr.get("IFA_ADDRESS"))
            if ip in MGMT_POOL:
                used.add(ipaddress.IPv4Interface(f"{ip}/{MGMT_PREFIX}").network)
    for subnet in MGMT_POOL.subnets(new_prefix=MGMT_PREFIX):
        if subnet not in used:
            host, fabric = list(subnet.hosts())
            return MgmtState(host_if=f"pl-{lab}", host_ip=str(host), fabric_ip=str(fabric),
                             prefixlen=MGMT_PREFIX)
    raise LabError(f"no free management subnet left in {MGMT_POOL}")
