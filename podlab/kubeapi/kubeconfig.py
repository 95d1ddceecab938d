"""A kubeconfig pointing kubectl and client libraries at a lab's API server."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(path: Path, server_url: str, name: str = "podlab") -> Path:
    """Write a kubeconfig with one cluster, a user with no credentials (the server has no
    authentication) and a context selecting both as current; returns `path`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server_url}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
