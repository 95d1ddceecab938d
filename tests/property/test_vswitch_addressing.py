"""Any valid layout of vSwitches and nodes yields distinct, usable, non-reserved primary IPs."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from podlab.fakecloud import Topology

VPC = ipaddress.IPv4Network("10.0.0.0/16")


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, object]:
    prefix = draw(st.integers(min_value=24, max_value=29))
    subnets = list(VPC.subnets(new_prefix=prefix))
    picked = draw(st.lists(st.sampled_from(subnets[:64]), min_size=1, max_size=4, unique=True))
    vswitches = [{"id": f"vsw-{i}", "zone": f"z{i % 2}", "cidr": str(c)}
                 for i, c in enumerate(picked)]
    capacity = (2 ** (32 - prefix)) - 4
    counts = [draw(st.integers(min_value=0, max_value=min(capacity, 6))) for _ in picked]
    nodes = [{"name": f"n{i}-{j}", "vswitch": v["id"]}
             for i, (v, k) in enumerate(zip(vswitches, counts, strict=True)) for j in range(k)]
    return {"vpc": {"cidr": str(VPC)}, "vswitches": vswitches,
            "nodes": nodes or [{"name": "only", "vswitch": "vsw-0"}]}


@given(layouts())
def test_primary_ips_are_distinct_usable_and_never_reserved(data: dict[str, object]) -> None:
    t = Topology.from_dict(data)
    ips = [n.primary_ip for n in t.nodes]
    assert len(set(ips)) == len(ips)
    for node in t.nodes:
        cidr = node.vswitch.cidr
        reserved = {cidr.network_address, *(cidr.broadcast_address - i for i in range(3))}
        assert node.primary_ip in cidr
        assert node.primary_ip not in reserved
        assert node.vswitch.gateway in reserved
    for v in t.vswitches:
        assert v.usable_count == len(list(v.usable())) == v.cidr.num_addresses - 4
