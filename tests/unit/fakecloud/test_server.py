"""`podlab fakecloud serve` as a user runs it: the official SDK over real HTTP."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as vm

from tests.unit.fakecloud.sdk import REGION, ecs, vpc

ADMIN_TOKEN = "test-admin-token"


def admin(url: str, token: str = ADMIN_TOKEN) -> object:
    return json.load(urllib.request.urlopen(urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"})))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "podlab", "fakecloud", "serve", "--port",
                             str(port), "--admin-token", ADMIN_TOKEN], stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 30)
    assert ready
    assert "serving cn-hangzhou" in proc.stderr.readline()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_a_script_with_only_the_sdk_runs_the_whole_story(served: str) -> None:
    client = ecs(endpoint=served)
    instances = client.describe_instances(m.DescribeInstancesRequest(region_id=REGION)).body
    instance = instances.instances.instance[0]
    (vsw,) = [v for v in vpc(endpoint=served).describe_vswitches(vm.DescribeVSwitchesRequest(
        region_id=REGION)).body.v_switches.v_switch if v.zone_id == instance.zone_id]
    eni = client.create_network_interface(m.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=vsw.v_switch_id, security_group_id="sg")).body
    client.attach_network_interface(m.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        instance_id=instance.instance_id))
    client.assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni.network_interface_id,
        secondary_private_ip_address_count=5))
    with pytest.raises(ClientException) as info:  # 6 IPs per ENI on ecs.g7.large
        client.assign_private_ip_addresses(m.AssignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=eni.network_interface_id,
            secondary_private_ip_address_count=1))
    assert info.value.code == "InvalidOperation.Ipv4CountExceeded"

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"http://{served}/_podlab/state")
    assert anonymous.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as guessed:
        admin(f"http://{served}/_podlab/state", token="guess")
    assert guessed.value.code == 401
    state: Any = admin(f"http://{served}/_podlab/state")
    mine = next(e for e in state["enis"] if e["NetworkInterfaceId"] == eni.network_interface_id)
    assert (mine["Status"], len(mine["PrivateIpSets"]["PrivateIpSet"])) == ("InUse", 6)
    calls: Any = admin(f"http://{served}/_podlab/calls")
    assert [c["code"] for c in calls][-1] == "InvalidOperation.Ipv4CountExceeded"

    with pytest.raises(ClientException) as refused:
        ecs(endpoint=served, secret="guess").describe_instances(
            m.DescribeInstancesRequest(region_id=REGION))
    assert refused.value.code == "SignatureDoesNotMatch"
