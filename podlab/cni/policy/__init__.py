"""NetworkPolicy compiled for the datapath: the API's Pods, Namespaces and
NetworkPolicies (plain dicts) -> one node's `PolicyState` (identities, CIDR prefixes,
per local pod its allow rules). Pure Python; see docs/netpol.md.

    state = compile_state(pods, namespaces, policies, node="n1", host_ips=["192.168.0.1"])
"""

from podlab.cni.policy.compile import compile_state

__all__ = ["compile_state"]
