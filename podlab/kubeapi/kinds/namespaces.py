"""Namespace (v1): what every namespaced object lives in. The store keeps the lifecycle
(an object needs its namespace; a namespace with objects is Terminating until they are
gone); which namespaces are there from the start and may not go is said here."""

from __future__ import annotations

from typing import Any

from podlab.kubeapi import names
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, Column, Obj, status_of

# Namespaces a cluster cannot run without; a real API server refuses to delete them too.
SYSTEM = ("default", "kube-system")
NAME_LABEL = "kubernetes.io/metadata.name"


class Namespaces(Strategy):
    resource = Resource("namespaces", "Namespace", "", "v1", False, ("ns",), True)
    columns = (NAME, Column("Status", lambda n: status_of(n).get("phase", "")), AGE)
    scopes_namespaced = True

    def check_name(self, name: str) -> list[str]:
        return names.dns1123_label(name)

    def initial_objects(self) -> list[Obj]:
        return [{"metadata": {"name": name}} for name in SYSTEM]

    def default(self, obj: Obj) -> None:
        """As upstream (NamespaceDefaultLabelName, GA in 1.22): the label
        kubernetes.io/metadata.name is the namespace's name, set on every write, so a
        NetworkPolicy's namespaceSelector can pick a namespace by name."""
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        meta, name = obj["metadata"], obj["metadata"].get("name")
        labels = meta.get("labels") or {}
        if isinstance(labels, dict) and isinstance(name, str) and name:  # else: invalid
            meta["labels"] = {**labels, NAME_LABEL: name}

    def initial_status(self, given: Any) -> Obj:
        return {"phase": "Active"}

    def check_delete(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if name in SYSTEM:
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                           "namespace may not be deleted", kind="namespaces", name=name)

    def mark_terminating(self, obj: Obj) -> None:
        obj["status"] = {**status_of(obj), "phase": "Terminating"}


STRATEGY = Namespaces()
