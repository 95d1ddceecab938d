"""Bringing back a lab whose owner died (`podlab up --resume NAME`).

A SIGKILLed owner leaves the named namespaces (nodes, pods, the VPC router with its ENI
ports and routes) and the run dir (the lab's state, the cloud's and the API's stores, each
agent's store); its processes and threads (the cloud's servers, the control plane, the
agents, which die with the zygote, and the pods' workloads) are gone. A resumed lab adopts
the first and starts the second from those stores: see docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from podlab.lab.errors import LabError
from podlab.lab.ownership import kill, owned_processes, run_lock
from podlab.lab.process import owner_alive
from podlab.lab.state import LabState, run_dir

if TYPE_CHECKING:  # `podlab up --resume` checks the name before anything loads the SDK
    from podlab.fakecloud import Cloud
    from podlab.lab.fabric import VpcFabric

NETNS_DIR = Path("/run/netns")


def dead_lab(name: str) -> LabState:
    """The state of the lab `name` whose owner died; a LabError saying what to run instead
    for a name with no run dir, an unreadable state, a live owner, or a lab that died
    before it was up."""
    try:
        state = LabState.load(name)
    except FileNotFoundError:
        raise LabError(f"no lab {name!r} to resume: {run_dir() / name} holds none; "
                       f"`podlab up --name {name}` starts a new one") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LabError(f"lab {name!r} cannot be resumed: its state is unreadable ({e}); "
                       f"`podlab clean --name {name}` removes what is left") from None
    if owner_alive(state.owner):
        raise LabError(f"lab {name!r} runs (owner pid {state.owner.pid}): there is nothing "
                       f"to resume; `podlab status --name {name}` shows it")
    if state.status == "starting":  # a lab that died resuming was whole, and resumes again
        raise LabError(f"lab {name!r} died before it was up, so it is not whole; `podlab "
                       f"clean --name {name}` removes it, then `podlab up` starts anew")
    return state


def claim(state: LabState) -> LabState:
    """Make `state` (a new owner's, of a dead lab) the lab's: it takes on what the dead
    owner recorded and is saved, under the lock `clean` takes, so `clean` never removes a
    lab being resumed and two resumes never both win. The dead owner's processes that
    outlived it (an agent still exiting, a workload a script started) end first: the
    resumed lab starts its own. Returns the dead owner's state."""
    with run_lock():
        old = dead_lab(state.name)
        kill(list(owned_processes(state.name)))
        state.mgmt, state.nodes, state.pods = old.mgmt, old.nodes, old.pods
        state.status = "resuming"
        state.save()
    return old


def check_world(state: LabState) -> None:
    """What a resume adopts must be there (a reboot or a partial clean removes it)."""
    names = [state.fabric_netns, *(n.netns for n in state.nodes)]
    missing = [n for n in names if not (NETNS_DIR / n).exists()]
    if missing or state.mgmt is None:
        raise LabError(f"lab {state.name!r} cannot be resumed: its netns {', '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} gone; `podlab clean --name "
                       f"{state.name}` removes the rest, then `podlab up` starts anew")


def resync_fabric(cloud: Cloud, fabric: VpcFabric, node_netns: dict[str, str]) -> list[str]:
    """Make the router agree with the cloud's model, as every call leaves it: a port per
    attached ENI, a route per address of one, nothing else. The kernel kept them through
    the owner's death; what a kill between a call's fabric step and its commit left
    differing is fixed. Returns what was fixed."""
    fixed = []
    with cloud.lock:
        attached = {eni.id: eni for eni in cloud.all_enis() if eni.instance_id is not None}
        for eni_id in set(fabric.ports()) - attached.keys():
            fabric.unplug_eni(eni_id)
            fixed.append(f"unplugged ENI {eni_id}, which the cloud has detached")
        plugged = set(fabric.ports())
        want = {}
        for eni in attached.values():
            assert eni.instance_id is not None
            if eni.id not in plugged:
                fabric.plug_eni(node_netns[eni.instance_id], eni.id, eni.mac)
                fixed.append(f"plugged ENI {eni.id} into {eni.instance_id}")
            want.update(dict.fromkeys([*eni.ips, *eni.ipv6], eni.id))
        have = fabric.routes()
        for ip, eni_id in want.items():
            if have.get(ip) != eni_id:
                fabric.route_ip(ip, eni_id)
                fixed.append(f"routed {ip} to {eni_id}")
        for ip in have.keys() - want.keys():
            fabric.unroute_ip(ip)
            fixed.append(f"unrouted {ip}, which no attached ENI holds")
    return fixed
