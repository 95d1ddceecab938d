"""The cloud's model on disk: a model reopened from its state file is the one that wrote
it, through the official SDK (ClientTokens included), a reset, and a kill -9."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from podlab.fakecloud import Cloud, TopologyError, default_topology, mock
from tests.unit.fakecloud.sdk import REGION, ecs


def model(cloud: Cloud) -> dict[str, Any]:
    """Everything a client can observe of the model, and its bookkeeping (a copy)."""
    with cloud.lock:
        return copy.deepcopy({"enis": [e.row() for e in cloud.all_enis()],
                "free": {v: cloud.available_ips(v) for v in cloud.vswitches},
                "ipv6": sorted(cloud._ipv6_used), "tokens": cloud._tokens,
                "next_id": cloud._next_id})


def create(token: str | None = None, count: int = 2) -> str:
    return str(ecs().create_network_interface(ecs_models.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id="vsw-a", security_group_id="sg-podlab",
        secondary_private_ip_address_count=count, client_token=token)).body
        .network_interface_id)


def test_a_reopened_model_equals_the_one_that_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    topology = default_topology(nodes=2)
    n1 = topology.node("n1").instance_id
    with mock(topology) as endpoint:
        endpoint.cloud = Cloud(topology, state=path)
        kept = create(token="t-1")
        gone = create()
        client = ecs()
        client.attach_network_interface(ecs_models.AttachNetworkInterfaceRequest(
            region_id=REGION, network_interface_id=kept, instance_id=n1))
        client.assign_private_ip_addresses(ecs_models.AssignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=kept, secondary_private_ip_address_count=3,
            client_token="t-2"))
        first_ip = endpoint.cloud.eni(kept).secondary_ips[0]
        client.unassign_private_ip_addresses(ecs_models.UnassignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=kept, private_ip_address=[first_ip]))
        client.assign_ipv_6addresses(ecs_models.AssignIpv6AddressesRequest(
            region_id=REGION, network_interface_id=kept, ipv_6address_count=2))
        client.delete_network_interface(ecs_models.DeleteNetworkInterfaceRequest(
            region_id=REGION, network_interface_id=gone))
        before = model(endpoint.cloud)

        endpoint.cloud = Cloud(topology, state=path)
        assert model(endpoint.cloud) == before
        # the reopened cloud goes on where the first stopped: a retried ClientToken gets
        # the first answer, a new ENI gets a new id and free addresses
        assert create(token="t-1") == kept
        with pytest.raises(Exception, match="IdempotentParameterMismatch"):
            create(token="t-1", count=3)
        fresh = create()
        assert fresh not in (kept, gone)
        assert not set(endpoint.cloud.eni(fresh).ips) & set(endpoint.cloud.eni(kept).ips)


def test_a_reset_empties_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    with mock(default_topology(nodes=1)) as endpoint:
        endpoint.cloud = Cloud(endpoint.cloud.topology, state=path)
        empty = model(endpoint.cloud)
        create(token="t-1")
        endpoint.reset()
        assert model(endpoint.cloud) == empty
        assert model(Cloud(endpoint.cloud.topology, state=path)) == empty


def test_a_state_file_of_another_world_is_refused(tmp_path: Path) -> None:
    Cloud(default_topology(nodes=1), state=tmp_path / "cloud.db")
    with pytest.raises(TopologyError, match="another world"):
        Cloud(default_topology(nodes=2), state=tmp_path / "cloud.db")


def test_a_killed_cloud_leaves_every_finished_call_in_its_file(tmp_path: Path) -> None:
    """A process creating ENIs in a loop, killed with SIGKILL mid-stream: its successor
    holds each ENI whose call returned, with its addresses taken, and no half of one."""
    path = tmp_path / "cloud.db"
    script = textwrap.dedent(f"""
        import sys
        from podlab.fakecloud import Cloud, default_topology
        cloud = Cloud(default_topology(nodes=1), state={str(path)!r})
        while True:
            eni = cloud.create_eni("vsw-a", security_groups=["sg"], secondary_count=1)
            cloud.delete_eni(cloud.create_eni("vsw-a", security_groups=["sg"]).id)
            print(eni.id, *eni.ips, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = [proc.stdout.readline().split() for _ in range(20)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done += [line.split() for line in proc.stdout.read().splitlines()]  # printed meanwhile
    cloud = Cloud(default_topology(nodes=1), state=path)
    for eni_id, *ips in done:
        assert cloud.eni(eni_id).ips == ips
    secondaries = [e for e in cloud.all_enis() if e.type == "Secondary"]
    held = [ip for e in cloud.all_enis() if e.vswitch.id == "vsw-a" for ip in e.ips]
    assert len(held) == len(set(held))
    vsw = cloud.vswitch("vsw-a")
    assert cloud.available_ips("vsw-a") == vsw.usable_count - len(held)
    # at most one call was under way: one create's ENI not yet printed, or one not deleted
    assert len(done) <= len(secondaries) <= len(done) + 2
