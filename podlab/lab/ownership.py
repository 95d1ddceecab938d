"""Which objects on this machine a lab made, and removing exactly those.

Every object a lab creates carries its id: a netns's loopback and every link podlab adds
to the root netns get the interface alias `podlab:<lab>`, every process it starts has
PODLAB_LAB=<lab> in its environment, and its files live under <run dir>/<lab>/ (its pods'
UTS namespaces are mounted there), except a netns's /etc/netns/<netns>/, which goes with
the netns. Removal goes by these labels, never by name patterns, so a foreign `podlab-x`
netns survives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from podlab.datapath import netlink
from podlab.datapath.bpf import bpffs
from podlab.datapath.model import DatapathError
from podlab.lab.process import owner_alive, started_at, wait_gone
from podlab.lab.sandbox import ETC_NETNS, remove_etc, remove_uts, uts_mounts
from podlab.lab.state import LabState, run_dir

LABEL_PREFIX = "podlab:"
NETNS_PREFIX = "podlab-"
LAB_ENV = "PODLAB_LAB"
LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$")


def label(lab: str) -> str:
    return LABEL_PREFIX + lab


def netns_name(lab: str, *parts: str) -> str:
    return "-".join((NETNS_PREFIX.rstrip("-"), lab, *parts))


def netns_label(name: str) -> str | None:
    """The owner label on a netns's loopback, or None for a netns podlab did not make."""
    try:
        with netlink.opened(name) as ns:
            links = ns.get_links(ifname="lo")
    except (OSError, DatapathError):
        return None
    alias = links[0].get("ifalias") if links else None
    return alias if isinstance(alias, str) and alias.startswith(LABEL_PREFIX) else None


NETNS_RECORD = "netns.list"  # in a lab's run dir: every netns it is about to create


def record_netns(lab: str, name: str) -> None:
    """Note, before creating it, that `name` is `lab`'s: a process killed between creating
    a netns and labelling it leaves one that only this record names."""
    lab_dir = run_dir() / lab
    if lab_dir.is_dir():
        with (lab_dir / NETNS_RECORD).open("a") as f:
            f.write(name + "\n")


def _recorded_netns(lab: str | None) -> dict[str, str]:
    """Unlabelled netns that a lab's record names: name -> lab."""
    found = {}
    root = run_dir()
    for record in sorted(root.glob(f"{lab or '*'}/{NETNS_RECORD}")) if root.is_dir() else []:
        owner = record.parent.name
        for name in record.read_text().split():
            if name.startswith(netns_name(owner) + "-"):
                found[name] = owner
    return found


def owned_netns(lab: str | None = None) -> dict[str, str]:
    """Named netns carrying a podlab label, or named by a lab's record and carrying none
    (of `lab` only, when given): name -> lab."""
    found = {}
    prefix = netns_name(lab) + "-" if lab else NETNS_PREFIX
    recorded = _recorded_netns(lab)
    for name in netns.listnetns():
        if not name.startswith(prefix):
            continue
        owner = netns_label(name)
        if owner and (lab is None or owner == label(lab)):
            found[name] = owner.removeprefix(LABEL_PREFIX)
        elif owner is None and name in recorded:
            found[name] = recorded[name]
    return found


def owned_root_links(lab: str | None = None) -> dict[str, str]:
    """Links in the root netns carrying a podlab label: ifname -> lab."""
    found = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            alias = link.get("ifalias")
            if isinstance(alias, str) and alias.startswith(LABEL_PREFIX):
                owner = alias.removeprefix(LABEL_PREFIX)
                if lab is None or owner == lab:
                    found[link.get("ifname")] = owner
    return found


def owned_processes(lab: str | None = None) -> dict[int, str]:
    """Processes started for a lab (PODLAB_LAB in their environment): pid -> lab."""
    found = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(LAB_ENV.encode() + b"="):
                owner = var.split(b"=", 1)[1].decode()
                if lab is None or owner == lab:
                    found[int(entry.name)] = owner
    return found


def pids_in_netns(name: str) -> list[int]:
    """Processes living in a named netns: deleting its name would not free it while they run."""
    try:
        target = os.stat(f"/run/netns/{name}")
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            pids.append(int(entry.name))
    return pids


def kill(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is still there after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        pids = [p for p in alive if not wait_gone(p, timeout=3.0)]
        if not pids:
            return


def remove_netns(name: str) -> None:
    """The netns, the processes in it, and its /etc/netns files."""
    kill(pids_in_netns(name))
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)
    remove_etc(name)


def remove_lab(lab: str) -> list[str]:
    """Remove everything labelled with `lab`; returns what was removed, for the user."""
    removed = []
    procs = owned_processes(lab)
    kill(list(procs))
    removed += [f"process {pid}" for pid in procs]
    # Root links first: a veth whose peer is in the fabric netns vanishes on its own, a
    # moment later, when that netns goes; deleting it first leaves nothing to race.
    links = owned_root_links(lab)
    if links:
        with IPRoute() as ipr:
            for ifname in links:
                for index in ipr.link_lookup(ifname=ifname):
                    try:
                        ipr.link("del", index=index)
                    except NetlinkError as e:
                        if e.code != errno.ENODEV:
                            raise
                removed.append(f"link {ifname}")
    recorded = _recorded_netns(lab)  # read before the run dir goes
    for name in owned_netns(lab):
        remove_netns(name)
        removed.append(f"netns {name}")
    for name in recorded:  # files of a netns gone without them (its owner died between)
        if remove_etc(name):
            removed.append(f"dir {ETC_NETNS / name}")
    for point in uts_mounts(lab):  # rmtree cannot remove a mount point
        remove_uts(point)
        removed.append(f"uts namespace {point}")
    state_dir = run_dir() / lab
    # Its bpffs first: unmounting frees the pinned programs, maps and cgroup links, and
    # rmtree cannot remove a mount point (nor bpffs' own files).
    removed += [f"bpffs {point}" for point in bpffs.unmount(state_dir)]
    if state_dir.exists():
        shutil.rmtree(state_dir)
        removed.append(f"dir {state_dir}")
    return removed


def leftovers(lab: str) -> list[str]:
    """What of `lab` is still on the machine; empty after a clean teardown."""
    left = [f"netns {n}" for n in owned_netns(lab)]
    left += [f"link {n}" for n in owned_root_links(lab)]
    left += [f"process {p}" for p in owned_processes(lab)]
    left += [f"bpffs {p}" for p in bpffs.mounts_under(run_dir() / lab)]
    left += [f"uts namespace {p}" for p in uts_mounts(lab)]
    # by name: the record naming them is gone with the run dir, and this only reports
    left += [f"dir {d}" for d in sorted(ETC_NETNS.glob(netns_name(lab) + "-*"))]
    if (run_dir() / lab).exists():
        left.append(f"dir {run_dir() / lab}")
    return left


def live_labs() -> dict[str, LabState]:
    """Labs whose owning process still runs."""
    labs = {}
    for state in LabState.all():
        if owner_alive(state.owner):
            labs[state.name] = state
    return labs


@contextlib.contextmanager
def run_lock() -> Iterator[None]:
    """Held while a lab's name is claimed or a dead lab removed, so `clean` never removes
    a lab that is being claimed but has no state file yet."""
    root = run_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DeadLab:
    """A lab with objects on this machine and no live owner, and how we know."""

    name: str
    why: str


def dead_labs(lab: str | None = None) -> list[DeadLab]:
    """Labs (every one, or only `lab`) whose objects outlived their owner."""
    states = {s.name: s for s in LabState.all()}
    root = run_dir()
    names = {d.name for d in root.iterdir() if d.is_dir()} if root.is_dir() else set()
    names |= set(owned_netns(lab).values()) | set(owned_root_links(lab).values())
    names |= set(owned_processes(lab).values())
    dead = []
    for name in sorted(names if lab is None else names & {lab}):
        state = states.get(name)
        if state is None:
            dead.append(DeadLab(name, f"no readable {root / name / 'state.json'}, so no owner"))
        elif not owner_alive(state.owner):
            started = started_at(state.owner).strftime("%Y-%m-%d %H:%M:%S UTC")
            dead.append(DeadLab(name, f"owner pid {state.owner.pid} (started {started}) "
                                      "is gone"))
    return dead


def remove_dead(lab: str) -> list[str]:
    """`remove_lab`, unless the lab has a live owner by now (it was claimed again since it
    was found dead): then nothing."""
    with run_lock():
        return [] if _owner_alive(lab) else remove_lab(lab)
def _owner_alive(lab: str) -> bool:
    try:
        return owner_alive(LabState.load(lab).owner)
    except (OSError, ValueError, KeyError, TypeError):
        return False
