"""The API server's storage: objects in memory, written through to a revision log on disk
(`sqlstore`, kine's shape: the resourceVersion is the row id), watches and in-process
subscriptions.

Semantics follow the real API server where the lab or a client can tell the difference:
every write bumps one global resourceVersion; stale writes conflict; a write that changes
nothing is not an event; status is only written through the status subresource; a watch
resumes from any resourceVersion the log still keeps (the last `history` changes), and an
older one is 410 Gone so the client relists. A change is on disk before anyone sees it,
so a store reopened from its file (`Store(path)`, or `reopen()`: what restarting the API
server does) has every object with its resourceVersion and uid, and resumes watches.

The store is the same for every kind: what differs (defaults, validation, initial status,
selectable fields, hooks) it asks the kind's `Strategy` from its `Registry`. The one kind
it knows by role is the one that scopes namespaced objects: an object needs its namespace,
and a namespace that still holds objects is Terminating until they are gone.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podlab.kubeapi.errors import ApiError, bad_request, not_found
from podlab.kubeapi.ipalloc import ClusterIPAllocator
from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.patch import apply_patch
from podlab.kubeapi.registry import Registry
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.selectors import (
    FieldTerm,
    Requirement,
    check_fields,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from podlab.kubeapi.sqlstore import RevisionLog
from podlab.kubeapi.strategy import Allocators, Strategy

__all__ = ["ApiError", "Store", "Watch"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
Callback = Callable[[str, str, Obj], None]

_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "generation", "managedFields", "selfLink")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName suffixes are made of


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_terms(s: Strategy, selector: str) -> list[FieldTerm]:
    """A field selector's terms, refused up front if `s`'s kind cannot select on one."""
    terms = parse_field_selector(selector)
    check_fields(terms, s.field_labels)
    return terms


@dataclass(frozen=True)
class _Change:
    rv: int
    type: str
    resource: str
    obj: Obj
    old: Obj | None


class Watch:
    """Events for one resource after a resourceVersion, in order: `{"type", "object"}`.

    Iterating blocks until the next event and ends once `close()` is called; `get()` waits
    at most a timeout, for servers that must also notice clients going away.
    """

    def __init__(self, store: Store, strategy: Strategy, namespace: str | None,
                 labels: list[Requirement], fields: list[FieldTerm]) -> None:
        self._store, self._strategy, self.namespace = store, strategy, namespace
        self.resource = strategy.resource.name
        self._labels, self._fields = labels, fields
        self._cond = threading.Condition()
        self._events: deque[Obj] = deque()
        self._closed = False

    def _matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return (labels_match(self._labels, meta.get("labels"))
                and fields_match(self._fields, self._strategy.field_set(obj)))
    def _offer(self, change: _Change) -> None:
        """Queue `change` if this watch sees it; objects moving out of the selection are
        DELETED and moving in are ADDED, as the API server reports them."""
        new = self._matches(change.obj)
        kind = change.type
        if kind == "MODIFIED":
            old = change.old is not None and self._matches(change.old)
            if new and not old:
                kind = "ADDED"
            elif old and not new:
                kind = "DELETED"
            elif not new:
                return
        elif not new:
            return
        with self._cond:
            self._events.append({"type": kind, "object": change.obj})
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, timeout: float | None = None) -> Obj | None:
        """The next event, or None if none came within `timeout` or the watch is closed."""
        with self._cond:
            if not self._events and not self._closed:
                self._cond.wait(timeout)
            if not self._events:
                return None
            event = self._events.popleft()
        return {"type": event["type"], "object": copy.deepcopy(event["object"])}

    def __iter__(self) -> Iterator[Obj]:
        return self

    def __next__(self) -> Obj:
        while True:
            event = self.get(timeout=None)
            if event is not None:
                return event
            if self._closed:
                raise StopIteration

    def close(self) -> None:
        self._end()
        self._store._forget(self)

    def _end(self) -> None:
        with self._cond:
            self._closed = True
            self._events.clear()
            self._cond.notify_all()


class Store:
    """Thread-safe objects keyed by resource ("pods", "services", ...), one global
    resourceVersion counter; `kinds` are the kinds served (the built-in ones by default).

    `path`: the file that keeps them, created if missing and read back if not (a lab's is
    `<run dir>/kube.db`); None keeps them in memory only, for tests."""

    def __init__(self, path: Path | str | None = None, *, service_cidr: str = "10.96.0.0/12",
                 history: int = 1000, namespace_grace: float = 1.0,
                 kinds: Registry = BUILTIN) -> None:
        self.kinds = kinds
        self.path = Path(path) if path is not None else None
        self._scope = kinds.scope
        self._lock = threading.Lock()
        self._namespace_grace = namespace_grace
        self._service_cidr = service_cidr
        self._history = history
        self._watches: set[Watch] = set()
        self._timers: dict[str, threading.Timer] = {}  # Terminating namespaces' ends
        self._subscribers: list[Callback] = []
        self._pending: deque[tuple[str, str, Obj]] = deque()
        self._dispatch = threading.Lock()
        self._local = threading.local()
        with self._lock:
            self._open()
        for s in sorted(kinds, key=lambda k: k is not self._scope):  # namespaces first
            for obj in s.initial_objects():
                if self._key(s.resource, obj["metadata"].get("namespace"),
                             obj["metadata"]["name"]) not in self._objects[s.resource.name]:
                    self.create(s.resource.name, obj)

    def reopen(self) -> None:
        """What restarting the API server does to its storage: every watch ends, and the
        objects, the resourceVersion counter and the watch history are read back from the
        file. Nothing held in memory survives but the in-process subscribers (clients
        that stay connected), which miss nothing: no write happens in between."""
        if self.path is None:
            raise ValueError("a store kept in memory cannot be reopened")
        with self._lock:
            self._shut()
            self._open()

    def close(self) -> None:
        """End every watch and release the file; a write after this is 503."""
        with self._lock:
            self._shut()

    def _open(self) -> None:
        """Read the file into memory, and take back what the objects hold (under the lock)."""
        self._log = RevisionLog(self.path)
        contents = self._log.load([s.resource.name for s in self.kinds])
        self._objects: dict[str, dict[Key, Obj]] = contents.objects
        self._rv = contents.revision
        self._allocators = Allocators(ClusterIPAllocator(self._service_cidr))
        for s in self.kinds:
            for key, obj in self._objects[s.resource.name].items():
                s.on_restore(obj, self._allocators)
                if s is self._scope and obj["metadata"].get("deletionTimestamp"):
                    self._end_later(key[1])  # Terminating when the file was closed

    def _shut(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for w in self._watches:
            w._end()
        self._watches.clear()
        self._log.close()

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj:
        r = self.kinds.strategy(resource).resource
        with self._lock:
            obj = self._objects[r.name].get(self._key(r, namespace, name))
            if obj is None:
                raise not_found(r.name, name, r.group)
            return copy.deepcopy(obj)

    def list(self, resource: str, namespace: str | None = None, label_selector: str = "",
             field_selector: str = "") -> tuple[list[Obj], str]:
        """Matching objects ordered by namespace and name, and the list's resourceVersion."""
        s = self.kinds.strategy(resource)
        r = s.resource
        labels = parse_label_selector(label_selector)
        fields = _field_terms(s, field_selector)
        with self._lock:
            items = [copy.deepcopy(obj) for key, obj in sorted(self._objects[r.name].items())
                     if (namespace is None or not r.namespaced or key[0] == namespace)
                     and labels_match(labels, obj["metadata"].get("labels"))
                     and fields_match(fields, s.field_set(obj))]
            return items, str(self._rv)

    def watch(self, resource: str, namespace: str | None = None, resource_version: str = "",
              label_selector: str = "", field_selector: str = "") -> Watch:
        """Changes after `resource_version`; with "" or "0", the current objects come first
        as ADDED events. A resourceVersion older than the history raises 410 Expired."""
        s = self.kinds.strategy(resource)
        r = s.resource
        fields = _field_terms(s, field_selector)
        w = Watch(self, s, namespace if r.namespaced else None,
                  parse_label_selector(label_selector), fields)
        with self._lock:
            if resource_version in ("", "0"):
                for _, obj in sorted(self._objects[r.name].items()):
                    w._offer(_Change(self._rv, "ADDED", r.name, obj, None))
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version {resource_version!r}") from None
                if since < self._log.floor:
                    raise ApiError(410, "Expired", f"too old resource version: {since} "
                                                   f"({self._log.floor + 1})")
                for rev in self._log.since(r.name, since):
                    w._offer(_Change(rev.rv, rev.event, r.name, rev.obj, rev.old))
            self._watches.add(w)
        return w

    def subscribe(self, callback: Callback) -> None:
        """Call `callback(event_type, resource, obj)` after every change, in order, outside
        the store's lock (so it may call the store; its own changes are reported after it
        returns). Each call gets its own copy of the object."""
        with self._lock:
            self._subscribers.append(callback)

    # -- writes --------------------------------------------------------------------------

    def create(self, resource: str, obj: Obj) -> Obj:
        """Store a new object: server fields set, defaults filled in, validated. Status is
        the kind's initial one, as on a real server."""
        s = self.kinds.strategy(resource)
        r = s.resource
        obj = self._prepare(r.name, obj)
        meta = obj["metadata"]
        for field in _SERVER_FIELDS:
            meta.pop(field, None)
        if r.has_status:
            obj["status"] = s.initial_status(obj.get("status"))
            if obj["status"] is None:
                del obj["status"]
        generated = not meta.get("name") and meta.get("generateName")
        if generated:
            meta["name"] = f"{generated}{''.join(random.choices(_NAME_CHARS, k=5))}"
        s.default(obj)  # after the name is known: a Namespace's default label is its name
        s.ensure_valid(obj)
        with self._writing():
            if r.namespaced:
                self._check_namespace(meta["namespace"])
            key = self._key(r, meta.get("namespace"), meta["name"])
            if key in self._objects[r.name]:
                raise ApiError(409, "AlreadyExists", f'{r.qualified} "{meta["name"]}" '
                               f"already exists", kind=r.name, name=meta["name"], group=r.group)
            s.on_create(obj, self._allocators)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            self._record("ADDED", r, key, obj, None)
            result = copy.deepcopy(obj)
        self._deliver()
        return result

    def update(self, resource: str, obj: Obj) -> Obj:
        """Replace an object (status excepted); 409 Conflict if its resourceVersion is set and
        stale, 404 if it does not exist."""
        new = self._prepare(resource, obj)
        meta = new["metadata"]
        return self._write(resource, meta.get("namespace"), str(meta.get("name") or ""),
                           lambda old: new, status=False)

    def update_status(self, resource: str, obj: Obj) -> Obj:
        """Replace only `.status` (the /status subresource); the rest of `obj` is ignored."""
        new = self._prepare(resource, obj)
        meta = new["metadata"]
        return self._write(resource, meta.get("namespace"), str(meta.get("name") or ""),
                           lambda old: new, status=True)

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any,
              patch_type: str, *, subresource: str = "") -> Obj:
        """Patch an object: "merge" (RFC 7386), "strategic" or "json" (RFC 6902); with
        subresource="status" only the status part of the result is kept."""
        s = self.kinds.strategy(resource)

        def build(old: Obj) -> Obj:
            patched = apply_patch(old, patch, patch_type, s.merge_keys)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patched object must be a JSON object with metadata")
            patched["metadata"]["name"] = name
            if s.resource.namespaced:
                patched["metadata"]["namespace"] = old["metadata"]["namespace"]
            return patched

        return self._write(resource, namespace, name, build, status=subresource == "status")

    def delete(self, resource: str, namespace: str | None, name: str) -> Obj:
        """Remove an object at once (no graceful deletion or finalizers) and return it.

        A namespace with objects in it is Terminating first, as on a real server, so that
        `kubectl delete -f` can still delete what it holds: it goes as soon as it is empty,
        and after `namespace_grace` seconds takes whatever is left with it."""
        s = self.kinds.strategy(resource)
        r = s.resource
        with self._writing():
            key = self._key(r, namespace, name)
            if key not in self._objects[r.name]:
                raise not_found(r.name, name, r.group)
            s.check_delete(self._objects[r.name][key])
            if s is self._scope and self._holds(name):
                result = copy.deepcopy(self._terminate(key))
            else:
                result = copy.deepcopy(self._remove(s, key))
                if r.namespaced:
                    self._finish_namespace(key[0], only_if_empty=True)
        self._deliver()
        return result

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The lock, and the log's transaction committed before it is released: what is
        in memory when the lock is free is on disk."""
        with self._lock:
            try:
                yield
            finally:
                self._log.commit()

    def _check_namespace(self, name: str) -> None:
        r = self._scope.resource
        ns = self._objects[r.name].get(("", name))
        if ns is None:
            raise not_found(r.name, name)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {name} "
                           "because it is being terminated", kind=r.name, name=name)

    @staticmethod
    def _key(r: Resource, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if r.namespaced else "", name)

    def _prepare(self, resource: str, obj: Obj) -> Obj:
        """A private copy of `obj` with apiVersion, kind and namespace made consistent."""
        r = self.kinds.strategy(resource).resource
        if not isinstance(obj, dict):
            raise bad_request("the object must be a JSON object")
        obj = {"apiVersion": r.api_version, "kind": r.kind, **copy.deepcopy(obj)}
        if obj["apiVersion"] != r.api_version or obj["kind"] != r.kind:
            raise bad_request(f"the object is a {obj['apiVersion']}/{obj['kind']}, not a "
                              f"{r.api_version}/{r.kind}")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if r.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        return obj

    def _write(self, resource: str, namespace: str | None, name: str,
               build: Callable[[Obj], Obj], status: bool) -> Obj:
        s = self.kinds.strategy(resource)
        r = s.resource
        if status and not r.has_status:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        with self._writing():
            key = self._key(r, namespace, name)
            old = self._objects[r.name].get(key)
            if old is None:
                raise not_found(r.name, name, r.group)
            given = build(copy.deepcopy(old))
            rv = given["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                               f'{r.qualified} "{name}": the object has been modified; '
                               "please apply your changes to the latest version and try again",
                               kind=r.name, name=name, group=r.group)
            if status:
                new = copy.deepcopy(old)
                new["status"] = given.get("status")
                if new["status"] is None:
                    del new["status"]
            else:
                new = given
                new["metadata"].update({f: old["metadata"][f] for f in
                                        ("uid", "creationTimestamp", "generation")})
                for field in ("deletionTimestamp", "managedFields", "selfLink"):
                    new["metadata"].pop(field, None)
                if r.has_status:
                    new.pop("status", None)
                    if "status" in old:
                        new["status"] = old["status"]
                s.default(new)
                s.prepare_update(old, new)
                s.ensure_valid(new)
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)  # a no-op write is not a change, as in the API
            self._record("MODIFIED", r, key, new, old)
            result = copy.deepcopy(new)
        self._deliver()
        return result

    def _holds(self, namespace: str) -> bool:
        return any(k[0] == namespace for s in self.kinds if s.resource.namespaced
                   for k in self._objects[s.resource.name])

    def _terminate(self, key: Key) -> Obj:
        """Mark a namespace Terminating and schedule its end (under the lock)."""
        name = self._scope.resource.name
        old = self._objects[name][key]
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now()
        self._scope.mark_terminating(new)
        self._record("MODIFIED", self._scope.resource, key, new, old)
        self._end_later(key[1])
        return new

    def _end_later(self, namespace: str) -> None:
        """End a Terminating namespace after the grace period (under the lock)."""
        timer = threading.Timer(self._namespace_grace, self._end_namespace, (namespace,))
        timer.daemon = True
        self._timers[namespace] = timer
        timer.start()

    def _end_namespace(self, name: str) -> None:
        with self._writing():
            if self._timers.get(name) is not threading.current_thread():
                return  # cancelled: the store was closed (and maybe reopened) meanwhile
            del self._timers[name]
            self._finish_namespace(name, only_if_empty=False)
        self._deliver()

    def _finish_namespace(self, name: str, only_if_empty: bool) -> None:
        """Remove a Terminating namespace, with its objects unless it must be empty."""
        ns = self._objects[self._scope.resource.name].get(("", name))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if only_if_empty and self._holds(name):
            return
        for s in self.kinds:
            objects = self._objects[s.resource.name]
            for k in [k for k in objects if s.resource.namespaced and k[0] == name]:
                self._remove(s, k)
        self._remove(self._scope, ("", name))

    def _remove(self, s: Strategy, key: Key) -> Obj:
        old = self._objects[s.resource.name][key]
        gone = copy.deepcopy(old)
        self._record("DELETED", s.resource, key, gone, old)
        s.on_delete(old, self._allocators)
        return gone

    def _record(self, kind: str, r: Resource, key: Key, obj: Obj, old: Obj | None) -> None:
        """Make a change (under the lock) with the next resourceVersion: written to the
        log first, then memory, watches and the subscribers' queue."""
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        prev = int(old["metadata"]["resourceVersion"]) if old is not None else None
        self._log.append(rv, kind, r.name, key, obj, prev=prev)
        self._rv = rv
        if kind == "DELETED":
            del self._objects[r.name][key]
        else:
            self._objects[r.name][key] = obj
        if rv - self._log.floor > self._history + self._history // 10:
            self._log.compact(rv - self._history)  # a tenth at a time: fewer statements
        change = _Change(rv, kind, r.name, obj, old if kind == "MODIFIED" else None)
        for w in self._watches:
            if w.resource == r.name:
                w._offer(change)
        if self._subscribers:
            self._pending.append((kind, r.name, obj))

    def _deliver(self) -> None:
        """Run subscribers for queued changes, one thread at a time so they see them in
        order; a change a subscriber makes is delivered by the loop it is called from."""
        if getattr(self._local, "delivering", False):
            return
        with self._dispatch:
            self._local.delivering = True
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            return
                        kind, resource, obj = self._pending.popleft()
                        subscribers = list(self._subscribers)
                    for callback in subscribers:
                        try:
                            callback(kind, resource, copy.deepcopy(obj))
                        except Exception:  # one broken subscriber must not starve the others
                            log.exception("store subscriber %r failed on %s %s", callback,
                                          kind, resource)
            finally:
                self._local.delivering = False

    def _forget(self, w: Watch) -> None:
        with self._lock:
            self._watches.discard(w)
