"""One kind's rules in one place, as Kubernetes keeps them in
pkg/registry/<group>/<kind>/strategy.go: defaults, validation, the status a new object
starts with, table columns, selectable fields, merge keys, and hooks around create,
update and delete.

The store, the server, discovery and the printers know no kind by name: they ask its
strategy. A kind is added with one module under `podlab.kubeapi.kinds` that defines a
`Strategy` subclass, and its instance in that package's registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.ipalloc import ClusterIPAllocator
from podlab.kubeapi.patch import MergeKeys
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.tables import AGE, NAME, Column
from podlab.kubeapi.validation import (
    Cause,
    Errors,
    as_dict,
    invalid,
    unknown_fields,
    validate_metadata,
)

Obj = dict[str, Any]


@dataclass
class Allocators:
    """What the API server hands out across objects, such as Service cluster IPs: owned by
    the store, lent to the kinds' create and delete hooks under its lock."""

    cluster_ips: ClusterIPAllocator


class Strategy:
    """How the API server treats one kind. Subclasses set `resource` and override what
    their kind does differently; every hook runs under the store's lock and must not call
    the store."""

    resource: Resource
    columns: tuple[Column, ...] = (NAME, AGE)
    # field selector labels beyond metadata.name and metadata.namespace, with their values
    fields: Mapping[str, Callable[[Obj], str]] = MappingProxyType({})
    # strategic merge keys of this kind's own lists, by path (the shared ones are patch's)
    merge_keys: MergeKeys = MappingProxyType({})
    # the top-level fields besides apiVersion, kind, metadata (and status if it has one)
    body_fields: tuple[str, ...] = ("spec",)
    # objects of this kind hold every namespaced object: the Namespace kind
    scopes_namespaced: bool = False

    def check_name(self, name: str) -> list[str]:
        """Why `name` cannot name an object of this kind (most kinds: a DNS subdomain)."""
        return names.dns1123_subdomain(name)

    def initial_objects(self) -> list[Obj]:
        """Objects a new cluster already has, such as the default namespace."""
        return []

    def default(self, obj: Obj) -> None:
        """Fill in the kind's defaults in place, on every write, so readers see them."""

    def initial_status(self, given: Any) -> Obj | None:
        """The status a new object starts with (None: none); clients cannot set it."""
        return None

    def validate(self, errs: Errors, obj: Obj) -> None:
        """Record what is wrong with a defaulted object beyond its metadata."""

    def prepare_update(self, old: Obj, new: Obj) -> None:
        """Carry over, or refuse to change, what an update may not change."""

    def on_create(self, obj: Obj, allocators: Allocators) -> None:
        """Take what a new object needs from the cluster's allocators."""

    def on_delete(self, obj: Obj, allocators: Allocators) -> None:
        """Give back what `on_create` took."""

    def on_restore(self, obj: Obj, allocators: Allocators) -> None:
        """Take again what a stored object holds, when a store is read back from its file:
        the allocators start empty, and must not hand it out twice."""

    def check_delete(self, obj: Obj) -> None:
        """Raise an ApiError if this object may not be deleted."""

    def mark_terminating(self, obj: Obj) -> None:
        """Show that deletion waits for the objects it holds (for `scopes_namespaced`)."""

    # -- what the store and server call: the part every kind shares, then the kind's own --

    @property
    def field_labels(self) -> tuple[str, ...]:
        """What a field selector may name for this kind."""
        return ("metadata.name", "metadata.namespace", *self.fields)

    def field_set(self, obj: Obj) -> dict[str, str]:
        """The values a field selector compares, by field label."""
        meta = as_dict(obj.get("metadata"))
        found = {"metadata.name": str(meta.get("name") or ""),
                 "metadata.namespace": str(meta.get("namespace") or "")}
        found.update((label, value(obj)) for label, value in self.fields.items())
        return found

    def causes(self, obj: Obj) -> list[Cause]:
        """Every validation error of a defaulted `obj`, as Status causes."""
        errs = Errors()
        validate_metadata(errs, as_dict(obj.get("metadata")), self.check_name,
                          self.resource.namespaced)
        self.validate(errs, obj)
        return errs.causes

    def ensure_valid(self, obj: Obj) -> None:
        """Raise 422 Invalid with every cause, or return if `obj` is acceptable."""
        if causes := self.causes(obj):
            raise invalid(self.resource, str(as_dict(obj.get("metadata")).get("name") or ""),
                          causes)

    def unknown_fields(self, obj: Obj) -> list[str]:
        """The fields of `obj` a strict decoder of this kind would refuse."""
        status = ("status",) if self.resource.has_status else ()
        return unknown_fields(obj, (*self.body_fields, *status))
