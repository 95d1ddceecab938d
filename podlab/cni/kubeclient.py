"""The agent's client of the Kubernetes API (the official one): its bearer token and the
API's CA, as a DaemonSet pod's service account has them mounted."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client


def api_client(url: str, token: str = "", ca_file: Path | None = None) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    if ca_file is not None:
        configuration.ssl_ca_cert = str(ca_file)
    return client.ApiClient(configuration)
