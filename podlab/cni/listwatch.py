"""The list-then-watch loop of the agent's cluster-wide readers (Services, policy inputs),
as an informer runs it: one thread per resource lists, hands the whole list over, then
watches from the list's resourceVersion and hands over each event. An error, an ERROR
event (410 Gone: the version is too old) or the watch's timeout ends the watch and the
resource is listed again, so a missed event never outlives one watch.

Objects are handed over as plain API dicts (`sanitize_for_serialization`), the shape the
API serves, which is what the readers' pure functions take.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubernetes import client
from kubernetes.watch import Watch

RELIST_BACKOFF = 1.0  # seconds between attempts while the API is unreachable
WATCH_TIMEOUT = 60  # seconds a watch lasts before a relist (bounds drift)
Obj = dict[str, Any]


def object_key(obj: Obj) -> str:
    """namespace/name: what an object is known by between the list and the watch."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class Reader(Protocol):
    """What a ListWatch feeds; called from the resources' threads, one call at a time per
    resource, so a reader guards what its resources share."""

    def listed(self, resource: str, objects: list[Obj], version: str) -> None:
        """Every object of `resource`, in place of what was known of it, as of the list's
        resourceVersion `version`."""

    def changed(self, resource: str, kind: str, obj: Obj) -> None:
        """One watch event: `kind` is ADDED, MODIFIED or DELETED."""


class ListWatch:
    def __init__(self, api: client.ApiClient, lists: Mapping[str, Callable[..., Any]],
                 reader: Reader, events: Callable[..., None], *, failed: str) -> None:
        """`lists`: resource -> the client's list function for all namespaces; `failed`:
        the event logged when a list or watch fails."""
        self._plain: Callable[[Any], Obj] = api.sanitize_for_serialization
        self._lists, self.reader, self.events, self._failed = lists, reader, events, failed
        self._stop = threading.Event()
        self._watches: list[Watch] = []

    def start(self) -> ListWatch:
        for resource in self._lists:
            threading.Thread(target=self._run, args=(resource,), name=f"watch-{resource}",
                             daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for watch in list(self._watches):
            watch.stop()

    def _run(self, resource: str) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch(resource)
            except Exception as e:  # the API being away must not stop the agent
                self.events(self._failed, resource=resource, error=str(e))
                self._stop.wait(RELIST_BACKOFF)

    def _list_and_watch(self, resource: str) -> None:
        list_all = self._lists[resource]
        listed = list_all()
        self.reader.listed(resource, [self._plain(o) for o in listed.items],
                           str(listed.metadata.resource_version or ""))
        watch = Watch()
        self._watches.append(watch)
        try:
            for event in watch.stream(list_all, resource_version=listed.metadata.resource_version,
                                      timeout_seconds=WATCH_TIMEOUT):
                if self._stop.is_set():
                    return
                if event["type"] == "ERROR":  # e.g. 410 Gone: relist
                    raise RuntimeError(f"watch of {resource}: {event['raw_object']}")
                self.reader.changed(resource, event["type"], self._plain(event["object"]))
        finally:
            self._watches.remove(watch)
