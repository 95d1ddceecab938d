"""The API server's storage: objects in memory, one resourceVersion counter, watches and
in-process subscriptions.

Semantics follow the real API server where the lab or a client can tell the difference:
every write bumps one global resourceVersion; stale writes conflict; a write that changes
nothing is not an event; status is only written through the status subresource; a watch
resumes from any resourceVersion still in the bounded history, and an older one is 410
Gone so the client relists.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from podlab.kubeapi.defaults import apply_defaults, initial_status
from podlab.kubeapi.errors import ApiError, bad_request, not_found
from podlab.kubeapi.ipalloc import ClusterIPAllocator
from podlab.kubeapi.patch import apply_patch
from podlab.kubeapi.resources import RESOURCES, Resource
from podlab.kubeapi.selectors import (
    FieldTerm,
    Requirement,
    check_fields,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from podlab.kubeapi.validation import Errors, invalid, validate

__all__ = ["ApiError", "Store", "Watch"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
Callback = Callable[[str, str, Obj], None]

# Namespaces a cluster cannot run without; a real API server refuses to delete them too.
SYSTEM_NAMESPACES = ("default", "kube-system")
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "generation", "managedFields", "selfLink")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName suffixes are made of


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resource_of(name: str) -> Resource:
    try:
        return RESOURCES[name]
    except KeyError:
        raise ApiError(404, "NotFound", "the server could not find the requested resource",
                       kind=name) from None


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

    def __init__(self, store: Store, resource: str, namespace: str | None,
                 labels: list[Requirement], fields: list[FieldTerm]) -> None:
        self._store, self.resource, self.namespace = store, resource, namespace
        self._labels, self._fields = labels, fields
        self._cond = threading.Condition()
        self._events: deque[Obj] = deque()
        self._closed = False

    def _matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return (labels_match(self._labels, meta.get("labels"))
                and fields_match(self.resource, self._fields, obj))

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
        with self._cond:
            self._closed = True
            self._events.clear()
            self._cond.notify_all()
        self._store._forget(self)


class Store:
    """Thread-safe in-memory objects keyed by resource ("pods", "services", ...), one global
    resourceVersion counter."""

    def __init__(self, service_cidr: str = "10.96.0.0/12", history: int = 1000,
                 namespace_grace: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._namespace_grace = namespace_grace
        self._objects: dict[str, dict[Key, Obj]] = {name: {} for name in RESOURCES}
        self._rv = 0
        self._history: deque[_Change] = deque(maxlen=history)
        self._floor = 0  # every change after this resourceVersion is still in _history
        self._watches: set[Watch] = set()
        self._subscribers: list[Callback] = []
        self._pending: deque[tuple[str, str, Obj]] = deque()
        self._dispatch = threading.Lock()
        self._local = threading.local()
        self._ips = ClusterIPAllocator(service_cidr)
        for ns in SYSTEM_NAMESPACES:
            self.create("namespaces", {"metadata": {"name": ns}})

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj:
        r = _resource_of(resource)
        with self._lock:
            obj = self._objects[r.name].get(self._key(r, namespace, name))
            if obj is None:
                raise not_found(r.name, name, r.group)
            return copy.deepcopy(obj)

    def list(self, resource: str, namespace: str | None = None, label_selector: str = "",
             field_selector: str = "") -> tuple[list[Obj], str]:
        """Matching objects ordered by namespace and name, and the list's resourceVersion."""
        r = _resource_of(resource)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        check_fields(r.name, fields)
        with self._lock:
            items = [copy.deepcopy(obj) for key, obj in sorted(self._objects[r.name].items())
                     if (namespace is None or not r.namespaced or key[0] == namespace)
                     and labels_match(labels, obj["metadata"].get("labels"))
                     and fields_match(r.name, fields, obj)]
            return items, str(self._rv)

    def watch(self, resource: str, namespace: str | None = None, resource_version: str = "",
              label_selector: str = "", field_selector: str = "") -> Watch:
        """Changes after `resource_version`; with "" or "0", the current objects come first
        as ADDED events. A resourceVersion older than the history raises 410 Expired."""
        r = _resource_of(resource)
        fields = parse_field_selector(field_selector)
        check_fields(r.name, fields)
        w = Watch(self, r.name, namespace if r.namespaced else None,
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
                if since < self._floor:
                    raise ApiError(410, "Expired", f"too old resource version: {since} "
                                                   f"({self._floor + 1})")
                for change in self._history:
                    if change.rv > since and change.resource == r.name:
                        w._offer(change)
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
        the kind's initial one (only a Node's may be given), as on a real server."""
        r = _resource_of(resource)
        obj = self._prepare(r, obj)
        meta = obj["metadata"]
        for field in _SERVER_FIELDS:
            meta.pop(field, None)
        if r.has_status:
            obj["status"] = initial_status(r.name, obj.get("status"))
            if obj["status"] is None:
                del obj["status"]
        apply_defaults(r.name, obj)
        generated = not meta.get("name") and meta.get("generateName")
        if generated:
            meta["name"] = f"{generated}{''.join(random.choices(_NAME_CHARS, k=5))}"
        validate(r.name, obj)
        with self._lock:
            if r.namespaced:
                self._check_namespace(meta["namespace"])
            key = self._key(r, meta.get("namespace"), meta["name"])
            if key in self._objects[r.name]:
                raise ApiError(409, "AlreadyExists", f'{self._qualified(r)} "{meta["name"]}" '
                               f"already exists", kind=r.name, name=meta["name"], group=r.group)
            if r.name == "services":
                self._allocate_ip(obj)
            self._rv += 1
            meta.update(uid=str(uuid.uuid4()), resourceVersion=str(self._rv),
                        creationTimestamp=now(), generation=1)
            self._objects[r.name][key] = obj
            self._record("ADDED", r.name, obj, None)
            result = copy.deepcopy(obj)
        self._deliver()
        return result

    def update(self, resource: str, obj: Obj) -> Obj:
        """Replace an object (status excepted); 409 Conflict if its resourceVersion is set and
        stale, 404 if it does not exist."""
        r = _resource_of(resource)
        new = self._prepare(r, obj)
        meta = new["metadata"]
        return self._write(r, meta.get("namespace"), str(meta.get("name") or ""),
                           lambda old: new, status=False)

    def update_status(self, resource: str, obj: Obj) -> Obj:
        """Replace only `.status` (the /status subresource); the rest of `obj` is ignored."""
        r = _resource_of(resource)
        new = self._prepare(r, obj)
        meta = new["metadata"]
        return self._write(r, meta.get("namespace"), str(meta.get("name") or ""),
                           lambda old: new, status=True)

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any,
              patch_type: str, *, subresource: str = "") -> Obj:
        """Patch an object: "merge" (RFC 7386), "strategic" or "json" (RFC 6902); with
        subresource="status" only the status part of the result is kept."""
        r = _resource_of(resource)

        def build(old: Obj) -> Obj:
            patched = apply_patch(r.name, old, patch, patch_type)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patched object must be a JSON object with metadata")
            patched["metadata"]["name"] = name
            if r.namespaced:
                patched["metadata"]["namespace"] = old["metadata"]["namespace"]
            return patched

        return self._write(r, namespace, name, build, status=subresource == "status")

    def delete(self, resource: str, namespace: str | None, name: str) -> Obj:
        """Remove an object at once (no graceful deletion or finalizers) and return it.

        A namespace with objects in it is Terminating first, as on a real server, so that
        `kubectl delete -f` can still delete what it holds: it goes as soon as it is empty,
        and after `namespace_grace` seconds takes whatever is left with it."""
        r = _resource_of(resource)
        if r.name == "namespaces" and name in SYSTEM_NAMESPACES:
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace '
                           "may not be deleted", kind="namespaces", name=name)
        with self._lock:
            key = self._key(r, namespace, name)
            if key not in self._objects[r.name]:
                raise not_found(r.name, name, r.group)
            if r.name == "namespaces" and self._holds(name):
                result = copy.deepcopy(self._terminate(key))
            else:
                result = copy.deepcopy(self._remove(r, key))
                if r.namespaced:
                    self._finish_namespace(key[0], only_if_empty=True)
        self._deliver()
        return result

    # -- internals -----------------------------------------------------------------------

    def _check_namespace(self, name: str) -> None:
        ns = self._objects["namespaces"].get(("", name))
        if ns is None:
            raise not_found("namespaces", name)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {name} "
                           "because it is being terminated", kind="namespaces", name=name)

    @staticmethod
    def _key(r: Resource, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if r.namespaced else "", name)

    @staticmethod
    def _qualified(r: Resource) -> str:
        return f"{r.name}.{r.group}" if r.group else r.name

    def _prepare(self, r: Resource, obj: Obj) -> Obj:
        """A private copy of `obj` with apiVersion, kind and namespace made consistent."""
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

    def _write(self, r: Resource, namespace: str | None, name: str,
               build: Callable[[Obj], Obj], status: bool) -> Obj:
        if status and not r.has_status:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        with self._lock:
            key = self._key(r, namespace, name)
            old = self._objects[r.name].get(key)
            if old is None:
                raise not_found(r.name, name, r.group)
            given = build(copy.deepcopy(old))
            rv = given["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                               f'{self._qualified(r)} "{name}": the object has been modified; '
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
                apply_defaults(r.name, new)
                if r.name == "services":
                    self._keep_cluster_ip(old, new)
                validate(r.name, new)
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)  # a no-op write is not a change, as in the API
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[r.name][key] = new
            self._record("MODIFIED", r.name, new, old)
            result = copy.deepcopy(new)
        self._deliver()
        return result

    def _holds(self, namespace: str) -> bool:
        return any(k[0] == namespace for other in RESOURCES.values() if other.namespaced
                   for k in self._objects[other.name])

    def _terminate(self, key: Key) -> Obj:
        """Mark a namespace Terminating and schedule its end (under the lock)."""
        old = self._objects["namespaces"][key]
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now()
        new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        self._objects["namespaces"][key] = new
        self._record("MODIFIED", "namespaces", new, old)
        timer = threading.Timer(self._namespace_grace, self._end_namespace, (key[1],))
        timer.daemon = True
        timer.start()
        return new

    def _end_namespace(self, name: str) -> None:
        with self._lock:
            self._finish_namespace(name, only_if_empty=False)
        self._deliver()

    def _finish_namespace(self, name: str, only_if_empty: bool) -> None:
        """Remove a Terminating namespace, with its objects unless it must be empty."""
        ns = self._objects["namespaces"].get(("", name))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if only_if_empty and self._holds(name):
            return
        for other in RESOURCES.values():
            for k in [k for k in self._objects[other.name] if other.namespaced and k[0] == name]:
                self._remove(other, k)
        self._remove(RESOURCES["namespaces"], ("", name))

    def _remove(self, r: Resource, key: Key) -> Obj:
        old = self._objects[r.name].pop(key)
        if r.name == "services":
            for ip in (old.get("spec") or {}).get("clusterIPs") or ():
                if ip != "None":
                    self._ips.release(ip)
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record("DELETED", r.name, gone, None)
        return gone

    def _allocate_ip(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        wanted = spec.get("clusterIP") or ""
        if wanted == "None":
            spec["clusterIPs"] = ["None"]
            return
        if wanted:
            if why := self._ips.reserve(wanted):
                errs = Errors()
                errs.invalid("spec.clusterIPs", [wanted], why)
                raise invalid("services", svc["metadata"]["name"], errs.causes)
        else:
            wanted = self._ips.allocate() or ""
            if not wanted:
                raise ApiError(500, "InternalError", "Internal error occurred: failed to "
                               "allocate a serviceIP: range is full")
        spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]

    @staticmethod
    def _keep_cluster_ip(old: Obj, new: Obj) -> None:
        """clusterIP is immutable; an update that leaves it out keeps it, as since 1.20."""
        was, spec = old.get("spec") or {}, new.setdefault("spec", {})
        for field in ("clusterIP", "clusterIPs"):
            if field not in was:
                continue
            if spec.get(field) in (None, "", []):
                spec[field] = copy.deepcopy(was[field])
            elif spec[field] != was[field]:
                errs = Errors()
                errs.invalid(f"spec.{field}", spec[field], "field is immutable")
                raise invalid("services", new["metadata"]["name"], errs.causes)

    def _record(self, kind: str, resource: str, obj: Obj, old: Obj | None) -> None:
        """Log a change (under the lock): history, watches, then subscribers' queue."""
        if self._history.maxlen and len(self._history) == self._history.maxlen:
            self._floor = self._history[0].rv
        change = _Change(self._rv, kind, resource, obj, old)
        self._history.append(change)
        for w in self._watches:
            if w.resource == resource:
                w._offer(change)
        if self._subscribers:
            self._pending.append((kind, resource, obj))

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
