"""What clients ask before they ask for objects: version, API groups, resource lists, and
the OpenAPI v3 documents kubectl reads.

kubectl 1.32 needs OpenAPI only to decide how to validate: if a kind's PATCH operation
lists the `fieldValidation` query parameter (v3 first, then v2), it leaves validation to the
server; otherwise it downloads the v2 schema to validate on the client and refuses to apply
without it. So the v3 documents here hold just those PATCH operations, and /openapi/v2 is
404. The operations carry no request body, which tells `kubectl apply` not to compute
patches from OpenAPI; it falls back to the Go types built into it, which cover every kind
served here.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from podlab.kubeapi.registry import Registry
from podlab.kubeapi.resources import Resource

Obj = dict[str, Any]
GIT_VERSION = "v1.32.0-podlab"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def version() -> Obj:
    return {"major": "1", "minor": "32", "gitVersion": GIT_VERSION, "gitCommit": "podlab",
            "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z",
            "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(kinds: Registry, group: str) -> Obj:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in kinds.group_versions()
                if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list(kinds: Registry) -> Obj:
    groups = sorted({g for g, _ in kinds.group_versions() if g})
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(kinds, g) for g in groups]}


def api_group(kinds: Registry, group: str) -> Obj | None:
    if group not in {g for g, _ in kinds.group_versions() if g}:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(kinds, group)}


def api_resource_list(kinds: Registry, group: str, version: str) -> Obj | None:
    """The APIResourceList of one group/version, with /status subresources."""
    served = kinds.served(group, version)
    if not served:
        return None
    resources: list[Obj] = []
    for r in served:
        entry: Obj = {"name": r.name, "singularName": r.singular, "namespaced": r.namespaced,
                      "kind": r.kind, "verbs": VERBS}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        if r.has_status:
            resources.append({"name": f"{r.name}/status", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _patch_operation(r: Resource) -> Obj:
    return {
        "operationId": f"patch{r.kind}",
        "description": f"partially update the specified {r.kind}",
        "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
                        "description": "Strict, Warn or Ignore; unknown fields are not "
                                       "checked by this server."}],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version,
                                            "kind": r.kind},
    }


@cache  # a Registry never changes, so neither do its documents
def _documents(kinds: Registry) -> dict[str, bytes]:
    docs = {}
    for group, version in kinds.group_versions():
        paths: Obj = {}
        for r in kinds.served(group, version):
            scope = "namespaces/{namespace}/" if r.namespaced else ""
            paths[f"/{_gv_path(group, version)}/{scope}{r.name}/{{name}}"] = {
                "patch": _patch_operation(r)}
        doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
               "paths": paths, "components": {"schemas": {}}}
        docs[_gv_path(group, version)] = json.dumps(doc).encode()
    return docs


def openapi_v3_index(kinds: Registry) -> Obj:
    """The /openapi/v3 discovery document: a URL (with a content hash) per group/version."""
    return {"paths": {
        path: {"serverRelativeURL": f"/openapi/v3/{path}?hash="
                                    f"{hashlib.sha512(body).hexdigest().upper()}"}
        for path, body in _documents(kinds).items()}}


def openapi_v3_document(kinds: Registry, path: str) -> bytes | None:
    """The document for "api/v1", "apis/apps/v1"...; None if there is none."""
    return _documents(kinds).get(path.strip("/"))
