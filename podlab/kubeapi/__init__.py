"""A subset of the Kubernetes API server, enough for kubectl and client libraries.

The lab's control plane keeps its objects here; `store` holds them (in memory, written
through to SQLite by `sqlstore`), `server` speaks the Kubernetes REST dialect over HTTP so
that real clients can drive the lab. Both are
the same for every kind: each kind's rules are its `Strategy`, one module in `kinds`.
"""
