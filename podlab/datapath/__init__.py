"""Pod interface plumbing per datapath (ipvlan, veth + policy routing, exclusive ENI) and eBPF.

Knows nothing of clouds or pools: it is given an IP, a gateway, a device and a netns.
See docs/datapath.md for each datapath's plumbing.
"""

from podlab.datapath.eni import eni_device, eni_on_node, eni_table, prepare_eni
from podlab.datapath.model import (
    DatapathError,
    EniLink,
    Interface,
    IpConfig,
    NodeLink,
    PodInterfaces,
    PodNetwork,
    Route,
)
from podlab.datapath.registry import (
    DATAPATHS,
    Datapath,
    UnknownDatapath,
    datapath,
    kernel_has_ipvlan,
    select_datapath,
)

__all__ = [
    "DATAPATHS",
    "Datapath",
    "DatapathError",
    "EniLink",
    "Interface",
    "IpConfig",
    "NodeLink",
    "PodInterfaces",
    "PodNetwork",
    "Route",
    "UnknownDatapath",
    "datapath",
    "eni_device",
    "eni_on_node",
    "eni_table",
    "kernel_has_ipvlan",
    "prepare_eni",
    "select_datapath",
]
