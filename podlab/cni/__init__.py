"""The node agent (Terway's terwayd): its ENI/IP pool, the SQLite store of its intents and
leases, its cloud client over the official SDKs, metadata identity, the pod watch, the
socket protocol the CNI plugin speaks, and its command, `podlab-agent` (`cli.py`).

The CNI plugin itself is Go (`cmd/podlab-cni`), a thin client of this socket. This package
knows nothing of the lab: it runs unchanged against a real cloud endpoint and a real
Kubernetes API, and imports nothing of `podlab.lab`, `podlab.kubeapi` or `podlab.fakecloud`.
"""
