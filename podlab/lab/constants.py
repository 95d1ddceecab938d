"""Addresses and names every part of the lab agrees on, in one module that imports nothing
of podlab, so the lab, its control plane and the CLI share them without importing each other."""

import ipaddress

DEFAULT_LAB = "lab"  # like kind's `kind`: every command works without --name

# Where nodes reach the OpenAPI endpoint, as ECS reaches its VPC endpoint over 100.100/16.
CLOUD_ENDPOINT_IP = "100.100.80.1"
CLOUD_PORT = 80
METADATA_IP = "100.100.100.200"

KUBE_API_PORT = 6443
NODE_KUBE_API = f"https://{CLOUD_ENDPOINT_IP}:{KUBE_API_PORT}"  # the control plane's, for nodes
SERVICE_CIDR = "172.21.0.0/20"  # ClusterIPs of a lab with a control plane

# Cluster DNS (issue 19), kubeadm's conventions: kube-dns takes the Service CIDR's 10th address.
CLUSTER_DOMAIN = "cluster.local"
KUBE_DNS_IP = str(ipaddress.ip_network(SERVICE_CIDR)[10])  # 172.21.0.10
NODE_LOCAL_DNS_IP = "169.254.20.10"  # NodeLocal DNSCache's default link-local address
VPC_RESOLVERS = ("100.100.2.136", "100.100.2.138")  # Alibaba Cloud's VPC DNS
DNS_LOG_DIR = "dns"  # in a lab's run dir: each DNS server's lookup log socket
