"""The resources this API serves: one table that discovery, routing and the store all read."""

from __future__ import annotations

from dataclasses import dataclass

from podlab.kubeapi.errors import ApiError


@dataclass(frozen=True)
class Resource:
    """A REST resource and the kind it holds, as discovery describes it."""

    name: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource("namespaces", "Namespace", "", "v1", False, ("ns",), True),
    Resource("nodes", "Node", "", "v1", False, ("no",), True),
    Resource("pods", "Pod", "", "v1", True, ("po",), True),
    Resource("services", "Service", "", "v1", True, ("svc",), True),
    Resource("endpoints", "Endpoints", "", "v1", True, ("ep",)),
    Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True),
    Resource("statefulsets", "StatefulSet", "apps", "v1", True, ("sts",), True),
    Resource("deployments", "Deployment", "apps", "v1", True, ("deploy",), True),
    Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True, ("netpol",)),
)}


def resource_for_kind(kind: str, api_version: str) -> Resource:
    """The resource serving `kind` at `api_version` ("v1", "apps/v1"); 404 when none does."""
    for r in RESOURCES.values():
        if r.kind == kind and r.api_version == api_version:
            return r
    raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')


def group_versions() -> list[tuple[str, str]]:
    """Every (group, version) served, core first, in a stable order."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES.values():
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return sorted(seen, key=lambda gv: (gv[0] != "", gv))
