"""A REST resource as discovery describes it: the name in URLs, its kind, group and scope."""

from __future__ import annotations

from dataclasses import dataclass


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
    categories: tuple[str, ...] = ()  # ("all",) puts it in `kubectl get all`

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`pods`, `statefulsets.apps`: how errors name the resource."""
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def qualified_kind(self) -> str:
        """`Pod`, `NetworkPolicy.networking.k8s.io`: how 422 messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind
