"""The CNI plugin, the node agent with its ENI/IP pool, and the IPAM store.

Knows nothing of the lab: it runs unchanged against a real cloud endpoint and a real
Kubernetes API.
"""
