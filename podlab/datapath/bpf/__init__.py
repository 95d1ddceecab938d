"""eBPF Service load balancing and NetworkPolicy: tc programs on a pod's own interface,
socket hooks for a node's own netns, their maps pinned in the lab's bpffs. See docs/ebpf.md.

    bpffs.mount(path)                     once per lab (idempotent); bpffs.unmount(path) on down
    progs = Programs.load(pin_dir)        once per node: compile (cached), load or adopt pins
    progs.attach(netns, ifname)           per pod (ADD); detach (DEL); attached (CHECK)
    progs.attach_sockets(); progs.serve_netns(node_netns)    once per node
    maps = ServiceMaps(pin_dir); maps.sync(services)         on every watch event
    Conntrack(pin_dir).connections() / .gc() / .set_timeouts(); counters(pin_dir)
    policy = PolicyMaps(pin_dir); policy.sync(state)         on every policy change
    FlowReader(pin_dir).poll(ms); set_allow_sampling(pin_dir, n); policy_counters(pin_dir)
"""

from podlab.datapath.bpf import bpffs
from podlab.datapath.bpf.build import BuildError
from podlab.datapath.bpf.conntrack import Connection, Conntrack, Timeouts, counters
from podlab.datapath.bpf.flows import Flow, FlowReader
from podlab.datapath.bpf.libbpf import BpfError
from podlab.datapath.bpf.maps import MapFull
from podlab.datapath.bpf.policy import PolicyMaps, PolicyStats, policy_counters, set_allow_sampling
from podlab.datapath.bpf.programs import Programs, netns_cookie
from podlab.datapath.bpf.services import (
    Backend,
    Frontend,
    Programmed,
    Service,
    ServiceMaps,
    ServicePort,
    SyncStats,
    programmed,
)

__all__ = [
    "Backend",
    "BpfError",
    "BuildError",
    "Connection",
    "Conntrack",
    "Flow",
    "FlowReader",
    "Frontend",
    "MapFull",
    "PolicyMaps",
    "PolicyStats",
    "Programmed",
    "Programs",
    "Service",
    "ServiceMaps",
    "ServicePort",
    "SyncStats",
    "Timeouts",
    "bpffs",
    "counters",
    "netns_cookie",
    "policy_counters",
    "programmed",
    "set_allow_sampling",
]
