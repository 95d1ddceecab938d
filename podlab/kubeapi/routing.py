"""Where a request goes and what it wants back: URL paths resolved to resources, and the
Accept header's choice between objects, Tables and metadata-only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.registry import Registry
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy

Obj = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """A request path resolved against the served kinds."""

    strategy: Strategy
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def resource(self) -> Resource:
        return self.strategy.resource


def no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def resolve(kinds: Registry, parts: list[str]) -> Route:
    """Route the path segments after `/api` or `/apis`: `[group, version, ...]`, the group
    "" for the core API, to one of `kinds`' resources, a namespace, name and subresource;
    404 if none."""
    group, version, rest = parts[0], parts[1], parts[2:]
    served = {r.name: r for r in kinds.served(group, version)}
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in served \
            and served[rest[2]].namespaced:
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in served or len(rest) > 3:
        raise no_route()
    r = served[rest[0]]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if (sub is not None and (sub != "status" or not r.has_status)) or \
            (r.namespaced and name is not None and namespace is None):
        raise no_route()
    return Route(kinds.strategy(r.name), namespace, name, sub)


@dataclass(frozen=True)
class Accept:
    """What representation the client asked for: plain objects, a Table or metadata only."""

    as_kind: str = ""  # "", "Table", "PartialObjectMetadata" or "PartialObjectMetadataList"
    version: str = "v1"

    @classmethod
    def parse(cls, header: str) -> Accept:
        for media in header.split(","):
            params = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:])
            if params.get("g") == "meta.k8s.io" and params.get("as") in (
                    "Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                return cls(params["as"], params.get("v", "v1"))
            if media.split(";")[0].strip() in ("application/json", "*/*", "application/*"):
                return cls()
        return cls()


def partial(obj: Obj, version: str = "v1") -> Obj:
    """An object as PartialObjectMetadata, for clients that asked for metadata only."""
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata") or {}}
