"""The kinds one API server serves: their strategies by resource name, in the order
discovery lists them. The built-in set is `podlab.kubeapi.kinds.BUILTIN`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy


class Registry:
    """An immutable set of kinds, exactly one of which scopes the namespaced ones."""

    def __init__(self, strategies: Iterable[Strategy]) -> None:
        self._by_name: dict[str, Strategy] = {}
        for s in strategies:
            if s.resource.name in self._by_name:
                raise ValueError(f"two kinds are served as {s.resource.name!r}")
            self._by_name[s.resource.name] = s
        scopes = [s for s in self if s.scopes_namespaced]
        if len(scopes) != 1:
            raise ValueError("exactly one kind must hold the namespaced ones (Namespace)")
        self.scope = scopes[0]

    def __iter__(self) -> Iterator[Strategy]:
        return iter(self._by_name.values())

    def strategy(self, name: str) -> Strategy:
        """The kind served as `name` ("pods"); 404 as the API server says it when none is."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ApiError(404, "NotFound", "the server could not find the requested "
                                            "resource", kind=name) from None

    def extended(self, *more: Strategy) -> Registry:
        """These kinds and `more`."""
        return Registry([*self, *more])

    @property
    def resources(self) -> dict[str, Resource]:
        return {name: s.resource for name, s in self._by_name.items()}

    def for_kind(self, kind: str, api_version: str) -> Resource:
        """The resource serving `kind` at `api_version` ("v1", "apps/v1"); 404 if none."""
        for s in self:
            if s.resource.kind == kind and s.resource.api_version == api_version:
                return s.resource
        raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version '
                                        f'"{api_version}"')

    def group_versions(self) -> list[tuple[str, str]]:
        """Every (group, version) served, core first, in a stable order."""
        seen = {(s.resource.group, s.resource.version): None for s in self}
        return sorted(seen, key=lambda gv: (gv[0] != "", gv))

    def served(self, group: str, version: str) -> list[Resource]:
        """The resources of one group/version, in registry order."""
        return [s.resource for s in self if (s.resource.group, s.resource.version) ==
                (group, version)]
