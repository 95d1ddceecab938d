"""A kubeconfig pointing kubectl and client libraries at a lab's API server."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def write_kubeconfig(path: Path, server_url: str, name: str = "podlab",
                     token: str | None = None, ca: bytes | None = None) -> Path:
    """Write a kubeconfig with one cluster, a user (with its bearer token, when the server
    wants one) and a context selecting both as current; returns `path`, readable by its
    owner only, since the token is a credential. `ca`: the PEM that signed an https
    server's certificate."""
    cluster: dict[str, str] = {"server": server_url}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token} if token else {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
