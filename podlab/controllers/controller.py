"""What every controller shares: a work queue of keys, level-triggered
reconciles, and the two store reads that treat "not found" as an answer."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Self

from podlab.controllers.workqueue import WorkQueue
from podlab.kubeapi.errors import ApiError
from podlab.kubeapi.store import Store


class Controller:
    """`on_event` names the keys an event touches; `sync(key)` reads the current state
    and makes the world match. Subclasses set `name` and implement both."""

    name = "controller"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue = WorkQueue(self.name, self.sync)

    def start(self) -> Self:
        self.queue.start()
        return self

    def stop(self) -> None:
        self.queue.stop()

    def on_event(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def sync(self, key: Hashable) -> None:
        raise NotImplementedError

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None if it is gone."""
        try:
            return self.store.get(resource, namespace, name)
        except ApiError as e:
            if e.code != 404:
                raise
            return None

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete if present: a controller's delete must be idempotent."""
        try:
            self.store.delete(resource, namespace, name)
        except ApiError as e:
            if e.code != 404:
                raise
