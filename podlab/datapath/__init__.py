"""Pod interface plumbing per datapath (ipvlan, veth + policy routing, exclusive ENI) and eBPF.

Knows nothing of clouds or pools: it is given an IP, a gateway, a device and a netns.
"""
