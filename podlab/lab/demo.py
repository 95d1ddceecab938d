"""`podlab demo` (`make demo`): the showcase, grown by each capability that lands."""

from __future__ import annotations

import re
import subprocess
import sys

from alibabacloud_ecs20140526 import models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config

from podlab.fakecloud import default_topology
from podlab.lab.errors import LabError
from podlab.lab.lab import Lab
from podlab.lab.ownership import leftovers
from podlab.lab.tables import table

DEMO = "demo"
# Other labs may come and go while the demo runs (CI runs it beside the tests).
_OTHER_LABS = re.compile(rf"podlab-(?!{DEMO}-)|pl-(?!{DEMO}\b)")


def _host_snapshot() -> list[str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    lines = (run("ip", "netns", "list") + run("ip", "-o", "link", "show")).splitlines()
    return [re.sub(r"^\d+: ", "", line) for line in lines if not _OTHER_LABS.search(line)]


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _cloud_drives_the_fabric(lab: Lab) -> None:
    """The official SDK, pointed at the lab's cloud, attaches an ENI to n1: its device
    appears in n1, and the IP it is assigned arrives there from n2."""
    n1, n2 = lab.state.nodes
    ecs = EcsClient(Config(access_key_id="podlab", access_key_secret="podlab-secret",
                           endpoint=lab.state.cloud_endpoint_host, region_id=lab.topology.region,
                           protocol="http"))
    _step(f"The official ECS SDK at {lab.state.cloud_endpoint_host}: create an ENI in "
          f"{n1.vswitch}, attach it to {n1.name}, assign it an IP")
    eni = ecs.create_network_interface(models.CreateNetworkInterfaceRequest(
        region_id=lab.topology.region, v_switch_id=n1.vswitch, security_group_id="sg-demo")).body
    ecs.attach_network_interface(models.AttachNetworkInterfaceRequest(
        region_id=lab.topology.region, network_interface_id=eni.network_interface_id,
        instance_id=n1.instance_id))
    ip = ecs.assign_private_ip_addresses(models.AssignPrivateIpAddressesRequest(
        region_id=lab.topology.region, network_interface_id=eni.network_interface_id,
        secondary_private_ip_address_count=1)
    ).body.assigned_private_ip_addresses_set.private_ip_set.private_ip_address[0]
    links = lab.exec(n1.name, ["ip", "-br", "link"]).stdout
    device = next(line.split()[0].split("@")[0] for line in links.splitlines()
                  if eni.mac_address in line)
    print(f" ✓ {eni.network_interface_id} appeared in {n1.name} as {device} ({eni.mac_address})")
    lab.exec(n1.name, ["ip", "link", "set", device, "up"])
    lab.exec(n1.name, ["ip", "addr", "add", f"{ip}/32", "dev", device])
    ok = lab.exec(n2.name, ["ping", "-c", "1", "-W", "1", ip], check=False).returncode == 0
    print(f" {'✓' if ok else '✗'} {n2.name} reaches {ip} on {device} through the VPC")
    if not ok:
        raise LabError(f"{ip} assigned to {eni.network_interface_id} is not reachable")


def run_demo() -> int:
    before = _host_snapshot()
    _step("Bringing up a 2-node lab: a VPC with vSwitches in two zones, a node in each")
    # The fabric and the cloud speak for themselves here: no node agents take ENIs first.
    with Lab(default_topology(nodes=2), name=DEMO, agents=False) as lab:
        # Lab.up already ran; replay its progress from the event log for the reader.
        for e in lab.events.read():
            if e["event"] in ("fabric.vswitch", "node.up"):
                print(f" ✓ {e['event']}: " + ", ".join(f"{k}={v}" for k, v in e.items()
                                                       if k not in ("ts", "event")))
        _step("Nodes (ECS instances; eth0 is the primary ENI, MAC in Alibaba's OUI 00:16:3e)")
        print(table(
            ["name", "instance type", "zone", "vswitch", "primary ip", "mac"],
            [[n.name, n.instance_type, n.zone, n.vswitch, n.primary_ip, n.mac]
             for n in lab.state.nodes],
        ))
        n1, n2 = lab.state.nodes
        _step(f"Cross-node ping through the VPC router: {n1.name} ({n1.vswitch}) -> "
              f"{n2.name} {n2.primary_ip} ({n2.vswitch})")
        ping = lab.exec(n1.name, ["ping", "-c", "3", "-i", "0.2", "-W", "1", n2.primary_ip],
                        check=False)
        print(ping.stdout.strip())
        if ping.returncode != 0:
            raise LabError(f"cross-node ping failed:\n{ping.stdout}{ping.stderr}")
        _cloud_drives_the_fabric(lab)
        _step("Fabric routes (IP -> ENI), from the router's own routing table")
        print(table(["ip", "eni"], sorted(lab.fabric.routes().items())))
        assert lab.cloud is not None
        calls = lab.cloud.endpoint.calls
        print(f"\n{len(calls)} cloud calls: " + ", ".join(sorted({c.action for c in calls})))
        _step("Tearing down")
    after = _host_snapshot()
    if after != before or leftovers(DEMO):
        print(f"The host is NOT as it was: {leftovers(DEMO)} "
              f"{sorted(set(after) ^ set(before))}", file=sys.stderr)
        return 1
    print("The host is as it was: `ip netns list` and `ip link` unchanged.")
    return 0
