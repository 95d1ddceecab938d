"""Who a lab's API trusts and how it proves itself, made before anything starts: the
agents start before the API does, and must already hold their tokens and the CA."""

from __future__ import annotations

from dataclasses import dataclass, field

from podlab.kubeapi.auth import Tokens, User, reader
from podlab.kubeapi.tls import ServingCert
from podlab.lab.constants import CLOUD_ENDPOINT_IP

LAB_USER = "kubernetes-admin"  # the kubeconfig's user, as kubeadm names it: may do anything
# What a node agent may read (its ClusterRole): its pods now; Services, EndpointSlices,
# Namespaces and NetworkPolicies as its eBPF maps follow them. It writes nothing.
AGENT_READS = ("pods", "nodes", "namespaces", "services", "endpoints", "endpointslices",
               "networkpolicies")


@dataclass
class ApiAccess:
    cert: ServingCert = field(default_factory=lambda: ServingCert.create(
        ["127.0.0.1", CLOUD_ENDPOINT_IP]))  # the host's listener, the VPC's
    tokens: Tokens = field(default_factory=Tokens)
    agent_tokens: dict[str, str] = field(default_factory=dict)  # node -> its agent's

    def __post_init__(self) -> None:
        self.user_token = self.tokens.add(User(LAB_USER))

    def add_agent(self, node: str) -> str:
        """The token of `node`'s agent (`system:node:<node>`): reads, no writes."""
        token = self.tokens.add(reader(f"system:node:{node}", AGENT_READS))
        self.agent_tokens[node] = token
        return token
