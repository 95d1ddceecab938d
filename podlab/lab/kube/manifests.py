"""Applying manifests to a lab's API: multi-document YAML, validated whole before anything
is applied (so one bad document applies nothing), then created or merged in order.

Validation runs the API's own rules on a scratch store that knows the lab's namespaces;
the lab's API then gets each object through the official client (create, or a merge patch
of what the manifest says when the object exists, which keeps what the server filled in,
such as a Service's clusterIP).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.store import Store
from podlab.lab.errors import LabError


class ManifestError(LabError):
    """A manifest is not acceptable; the message names the document and the field."""


@dataclass(frozen=True)
class Applied:
    kind: str
    namespace: str | None
    name: str
    action: str  # created | configured | unchanged


def load_documents(text: str, source: str) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: not YAML: {e}") from e
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ManifestError(f"{source}: document {i + 1} has no kind/apiVersion")
    return docs


def resource_of(doc: dict[str, Any], where: str) -> Resource:
    try:
        return BUILTIN.for_kind(str(doc["kind"]), str(doc["apiVersion"]))
    except (KeyError, ApiError):
        kinds = sorted({f"{r.kind} ({r.group + '/' if r.group else ''}{r.version})"
                        for r in BUILTIN.resources.values()})
        raise ManifestError(f"{where}: unknown kind {doc['kind']} in {doc['apiVersion']}; "
                            f"the lab serves {', '.join(kinds)}") from None


def validate(docs: list[dict[str, Any]], namespaces: list[str], source: str) -> None:
    """Every document through the API's validation, in order, on a scratch store."""
    scratch = Store()
    for ns in namespaces:
        if ns not in ("default", "kube-system"):
            scratch.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": ns}})
    for i, doc in enumerate(docs):
        where = f"{source}: document {i + 1} ({doc['kind']} " \
                f"{(doc.get('metadata') or {}).get('name', '?')})"
        resource = resource_of(doc, where)
        try:
            scratch.create(resource.name, json.loads(json.dumps(doc)))
        except ApiError as e:
            if e.code == 409:
                continue  # the same object twice in one file: the later one merges
            causes = "; ".join(f"{c.get('field')}: {c.get('message')}"
                               for c in e.causes) or e.message
            raise ManifestError(f"{where}: {e.reason}: {causes}") from None


class LabApi:
    """The lab's API through the official client's generic calls."""

    def __init__(self, kubeconfig: str) -> None:
        """Through the lab's kubeconfig, which carries the user's token."""
        self.api = config.new_client_from_config(kubeconfig)  # type: ignore[no-untyped-call]
        self.url: str = self.api.configuration.host
        # call_api is the client's raw call: it sends only the headers it is given.
        self.auth = {s["key"]: s["value"] for s in
                     self.api.configuration.auth_settings().values()
                     if s["in"] == "header" and s["value"]}

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> dict[str, Any]:
        """One request; a Status answer is raised as the client's ApiException."""
        response = self.api.call_api(method, self.url + path,
                                     {"Content-Type": content_type,
                                      "Accept": "application/json", **self.auth}, body=body)
        response.read()
        if response.status >= 400:
            raise ApiException(http_resp=response)
        answer: dict[str, Any] = json.loads(response.data or b"{}")
        return answer

    def path(self, resource: Resource, namespace: str | None, name: str | None = None) -> str:
        base = resource.group_version_path
        if resource.namespaced:
            base += f"/namespaces/{namespace or 'default'}"
        base += f"/{resource.name}"
        return f"{base}/{name}" if name else base

    def namespaces(self) -> list[str]:
        return [n["metadata"]["name"] for n in
                self.call("GET", "/api/v1/namespaces").get("items", [])]

    def list(self, resource: Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        path = self.path(resource, namespace) if namespace or not resource.namespaced else \
            f"{resource.group_version_path}/{resource.name}"
        return list(self.call("GET", path).get("items", []))

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return self.call("GET", self.path(resource, namespace, name))

    def pods(self, namespace: str = "default") -> dict[str, dict[str, Any]]:
        """The namespace's pods by name."""
        return {p["metadata"]["name"]: p for p in self.list(BUILTIN.resources["pods"], namespace)}


def running(pods: dict[str, dict[str, Any]], names: Iterable[str]) -> bool:
    """Every pod in `names` is among `pods` and Running."""
    return all((pods.get(n, {}).get("status") or {}).get("phase") == "Running" for n in names)


def rolled_out(deploy: dict[str, Any]) -> bool:
    """A Deployment's pods are all of its current template and ready, as `kubectl rollout
    status` judges it."""
    status, want = deploy.get("status") or {}, int(deploy["spec"].get("replicas", 1))
    return (status.get("observedGeneration", 0) >= deploy["metadata"].get("generation", 1)
            and status.get("replicas") == status.get("updatedReplicas") == want
            and status.get("readyReplicas", 0) == want)


def apply(api: LabApi, docs: list[dict[str, Any]], source: str,
          progress: Callable[[Applied], None] | None = None) -> list[Applied]:
    validate(docs, api.namespaces(), source)
    done = []
    for doc in docs:
        resource = resource_of(doc, source)
        meta = doc.get("metadata") or {}
        namespace = meta.get("namespace", "default") if resource.namespaced else None
        try:
            api.call("POST", api.path(resource, namespace), doc)
            action = "created"
        except ApiException as e:
            if e.status != 409:
                raise ManifestError(f"{source}: {doc['kind']} {meta.get('name')}: "
                                    f"{_message(e)}") from None
            path = api.path(resource, namespace, meta["name"])
            before = api.get(resource, namespace, meta["name"])
            after = api.call("PATCH", path, doc, "application/merge-patch+json")
            same = before["metadata"].get("resourceVersion") == \
                after["metadata"].get("resourceVersion")
            action = "unchanged" if same else "configured"
        result = Applied(str(doc["kind"]), namespace, str(meta.get("name")), action)
        done.append(result)
        if progress:
            progress(result)
    return done


def _message(e: ApiException) -> str:
    try:
        status = json.loads(e.body or "{}")
    except ValueError:
        return str(e.reason)
    causes = (status.get("details") or {}).get("causes") or []
    return "; ".join(f"{c.get('field')}: {c.get('message')}" for c in causes) or \
        str(status.get("message", e.reason))
