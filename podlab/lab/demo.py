"""`podlab demo` (`make demo`): the showcase, grown by each capability that lands."""

from __future__ import annotations

import subprocess
import sys

from podlab.fakecloud import default_topology
from podlab.lab.errors import LabError
from podlab.lab.lab import Lab
from podlab.lab.tables import table


def _host_snapshot() -> tuple[str, str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return run("ip", "netns", "list"), run("ip", "-o", "link")


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run_demo() -> int:
    before = _host_snapshot()
    _step("Bringing up a 2-node lab: a VPC with vSwitches in two zones, a node in each")
    with Lab(default_topology(nodes=2), name="demo") as lab:
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
        _step("Fabric routes (IP -> ENI), from the router's own routing table")
        print(table(["ip", "eni"], sorted(lab.fabric.routes().items())))
        _step("Tearing down")
    after = _host_snapshot()
    if after != before:
        print("The host is NOT as it was: ip netns / ip link changed", file=sys.stderr)
        return 1
    print("The host is as it was: `ip netns list` and `ip link` unchanged.")
    return 0
