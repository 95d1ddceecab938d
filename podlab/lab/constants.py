"""Addresses and names every part of the lab agrees on, in one module that imports nothing,
so the lab, its control plane and the CLI share them without importing each other."""

DEFAULT_LAB = "lab"  # like kind's `kind`: every command works without --name

# Where nodes reach the OpenAPI endpoint, as ECS reaches its VPC endpoint over 100.100/16.
CLOUD_ENDPOINT_IP = "100.100.80.1"
CLOUD_PORT = 80
METADATA_IP = "100.100.100.200"

KUBE_API_PORT = 6443
NODE_KUBE_API = f"https://{CLOUD_ENDPOINT_IP}:{KUBE_API_PORT}"  # the control plane's, for nodes
SERVICE_CIDR = "172.21.0.0/20"  # ClusterIPs of a lab with a control plane
