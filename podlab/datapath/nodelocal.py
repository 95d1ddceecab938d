"""The node-local DNS address (NodeLocal DNSCache's 169.254.20.10), reached by the pods of
every datapath. docs/datapath.md, "The node-local DNS address".

- In the node: the address is a /32 on `lo` (NodeLocal DNSCache puts it on a dummy link;
  this kernel has none), so a cache in the node's netns binds it. `node_local_address`
  makes it, with one nftables rule that hands DNS sent to the node's own address over to
  it: that is how a pod that bypasses the node delivers it (below).
- Kube-proxy modes: a veth pod's gateway is the node, which reaches the address like any
  other; ipvlan and exclusive-ENI pods' `veth1` into the node takes the address beside
  the Service CIDR (`service_access`).
- ipvlan and exclusive ENI, eBPF mode: no link to the node. A link-local destination
  routed out of the ENI is dropped by the VPC (Terway PR#162, PR#588), so the pod's own
  tc egress program translates it like a Service: `node_local_service` is a frontend
  address:53 (UDP and TCP) whose one backend is the node's own address, which the VPC
  (exclusive ENI) or the node's ipvlan port (ipvlan) delivers into the node; the reply
  gets the address back as its source (`lb_ingress`). The agent writes it beside the
  API's Services on every node, veth too: one path in eBPF mode, the cache sees each
  pod's own address, and NetworkPolicy sees the node (HOST, always allowed) as the peer.
"""

from __future__ import annotations

import subprocess

from podlab.datapath import netlink
from podlab.datapath.bpf import Backend, Service, ServicePort
from podlab.datapath.model import DatapathError

NODE_LOCAL_DNS = "169.254.20.10"
DNS_PORT = 53
TABLE = "podlab_nodelocal"  # one nftables table of the node's, replaced whole


def node_local_address(node_netns: str | None, node_ip: str, ip: str = NODE_LOCAL_DNS) -> None:
    """In the node: `ip`/32 on lo, and DNS to `node_ip` handed over to it (from pods, and
    from the node's own sockets, whose connect the socket LB turned towards `node_ip`).
    Idempotent; call it before the cache binds `ip`. Everything dies with the netns."""
    with netlink.opened(node_netns) as ns:
        lo = netlink.require_link(ns, "lo", node_netns or "this netns")
        netlink.ensure_address(ns, lo, ip, 32)
    dnat = f"ip daddr {node_ip} meta l4proto {{ tcp, udp }} th dport {DNS_PORT} dnat to {ip}"
    script = (f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n"
              f"  chain prerouting {{ type nat hook prerouting priority -100; {dnat}; }}\n"
              f"  chain output {{ type nat hook output priority -100; {dnat}; }}\n}}\n")
    argv = ["nft", "-f", "-"]
    if node_netns is not None:
        argv = ["ip", "netns", "exec", node_netns, *argv]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DatapathError(f"the node-local DNS address in {node_netns or 'this netns'}: "
                            f"{proc.stderr.strip()}")


def node_local_service(node_ip: str, ip: str = NODE_LOCAL_DNS) -> Service:
    """The eBPF frontend that takes a pod's DNS to `ip` to the node: `ip`:53, UDP and
    TCP, to `node_ip`:53."""
    backend = (Backend(node_ip, DNS_PORT),)
    return Service(ip, (ServicePort(DNS_PORT, "udp", backend, "dns"),
                        ServicePort(DNS_PORT, "tcp", backend, "dns-tcp")),
                   namespace="kube-system", name="node-local-dns")
