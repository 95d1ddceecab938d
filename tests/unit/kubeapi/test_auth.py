"""Bearer tokens as a cluster checks them: no token or a wrong one is 401, a node agent's
token reads what an agent reads and writes nothing (403), the user's token does all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from podlab.kubeapi.auth import Tokens, User, reader
from podlab.kubeapi.kubeconfig import write_kubeconfig
from podlab.kubeapi.server import KubeApiServer
from podlab.kubeapi.store import Store
from tests.unit.kubeapi.objects import pod
from tests.unit.kubeapi.wire import request

PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def server(store: Store, tokens: Tokens) -> Iterator[KubeApiServer]:
    srv = KubeApiServer(store, tokens=tokens).start()
    yield srv
    srv.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer guess"},
                                     {"Authorization": "Basic cG9kbGFiOnBvZGxhYg=="}])
@pytest.mark.parametrize(("method", "path"), [("GET", PODS), ("POST", PODS), ("GET", "/api"),
                                              ("DELETE", f"{PODS}/p")])
def test_without_a_valid_token_everything_is_401(server: KubeApiServer, store: Store,
                                                 headers: dict[str, str], method: str,
                                                 path: str) -> None:
    store.create("pods", pod("p"))
    code, status = request(server, method, path, pod("q") if method == "POST" else None,
                           headers)
    assert (code, status["kind"], status["reason"]) == (401, "Status", "Unauthorized")
    assert [p["metadata"]["name"] for p in store.list("pods", "default")[0]] == ["p"]


def test_an_agent_reads_and_may_not_write(server: KubeApiServer, store: Store,
                                          tokens: Tokens) -> None:
    agent = tokens.add(reader("system:node:n1", ["pods", "services"]))
    store.create("pods", pod("p"))
    assert request(server, "GET", PODS, headers=bearer(agent))[0] == 200
    assert request(server, "GET", f"{PODS}/p", headers=bearer(agent))[0] == 200
    assert request(server, "GET", "/api/v1/services", headers=bearer(agent))[0] == 200
    assert request(server, "GET", "/api", headers=bearer(agent))[0] == 200, "discovery"
    code, status = request(server, "POST", PODS, pod("q"), bearer(agent))
    assert (code, status["reason"]) == (403, "Forbidden")
    assert status["message"] == ('pods is forbidden: User "system:node:n1" cannot create '
                                 'resource "pods" in API group "" in the namespace "default"')
    assert request(server, "DELETE", f"{PODS}/p", headers=bearer(agent))[0] == 403
    assert request(server, "GET", "/api/v1/nodes", headers=bearer(agent))[0] == 403
    assert [p["metadata"]["name"] for p in store.list("pods", "default")[0]] == ["p"]


def test_the_users_kubeconfig_carries_its_token(server: KubeApiServer, tokens: Tokens,
                                                tmp_path: Path) -> None:
    token = tokens.add(User("podlab-admin"))
    path = write_kubeconfig(tmp_path / "kubeconfig", server.url, token=token)
    assert path.stat().st_mode & 0o777 == 0o600
    api: Any = config.new_client_from_config(str(path))  # type: ignore[no-untyped-call]
    v1: Any = client.CoreV1Api(api)
    v1.create_namespaced_pod("default", pod("from-kubeconfig"))
    assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == [
        "from-kubeconfig"]
