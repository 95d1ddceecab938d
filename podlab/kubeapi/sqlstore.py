"""The API's objects on disk, in the shape k3s's kine gives etcd's keyspace in SQL: one
table of revisions, each row one change of one object, its row id the resourceVersion.

The current objects are the newest row of each key that is not a deletion; a watch from
revision R is the rows after R. Compaction keeps the table small: once a revision F is
the floor, a row at or below F goes as soon as a newer row of its key is at or below F
too, and so do deletions at or below F. Every row above the floor therefore still has
the row it replaced (a MODIFIED event's old object, which tells a watch with a selector
that an object moved out of it); a watch from below the floor is 410 Gone.

WAL mode with `synchronous=NORMAL`: a committed change survives the process being
killed (not a power cut, which a lab does not outlive). The file is locked for one
connection (`locking_mode=EXCLUSIVE`): two API servers on one file would hand out the
same resourceVersions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podlab.kubeapi.errors import ApiError

SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the resourceVersion; never reused
    resource TEXT NOT NULL,                -- "pods", "deployments", ...
    namespace TEXT NOT NULL,               -- "" for cluster-scoped kinds
    name TEXT NOT NULL,
    event TEXT NOT NULL,                   -- ADDED, MODIFIED or DELETED
    prev_revision INTEGER,                 -- the key's row this one replaced
    value TEXT NOT NULL                    -- the object as JSON, as served at this revision
);
CREATE INDEX IF NOT EXISTS kine_resource_id ON kine (resource, id);
CREATE TABLE IF NOT EXISTS compaction (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL              -- the floor: watches resume from here on
);
"""

Obj = dict[str, Any]
Key = tuple[str, str]


@dataclass(frozen=True)
class Revision:
    """One change as a watch replays it: `old` is the object it replaced, if kept."""

    rv: int
    event: str
    obj: Obj
    old: Obj | None


@dataclass(frozen=True)
class Contents:
    """What a file holds: the current objects by resource and key, the newest revision
    ever written, and the compaction floor."""

    objects: dict[str, dict[Key, Obj]]
    revision: int
    floor: int


class RevisionLog:
    """The table of revisions behind one `Store`; not thread-safe on its own: the store
    calls it under its lock. `path` None keeps it in memory (unit tests)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(":memory:" if path is None else path, timeout=1.0,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO compaction VALUES (0, 0)")
        except sqlite3.OperationalError as e:
            raise OSError(f"cannot open the API's store {path}: {e} (is another API "
                          "server using it?)") from e
        self.floor = int(self._db.execute("SELECT revision FROM compaction").fetchone()[0])
        self._closed = False

    def load(self, resources: list[str]) -> Contents:
        """Every current object of `resources`, read back in revision order."""
        objects: dict[str, dict[Key, Obj]] = {r: {} for r in resources}
        rows = self._db.execute("SELECT resource, namespace, name, event, value FROM kine "
                                "ORDER BY id")
        for resource, namespace, name, event, value in rows:
            if resource not in objects:
                continue  # a kind this server no longer serves
            if event == "DELETED":
                objects[resource].pop((namespace, name), None)
            else:
                objects[resource][(namespace, name)] = json.loads(value)
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
        return Contents(objects, int(seq[0]) if seq else 0, self.floor)

    def append(self, rv: int, event: str, resource: str, key: Key, obj: Obj, *,
               prev: int | None) -> None:
        """Write one change; it is durable once `commit` returns."""
        self._check_open()
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        self._db.execute("INSERT INTO kine VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (rv, resource, key[0], key[1], event, prev,
                          json.dumps(obj, separators=(",", ":"))))

    def commit(self) -> None:
        if not self._closed and self._db.in_transaction:
            self._db.execute("COMMIT")

    def since(self, resource: str, rv: int) -> Iterator[Revision]:
        """The changes of `resource` after revision `rv` (at least the floor), in order."""
        self._check_open()
        rows = self._db.execute(
            "SELECT k.id, k.event, k.value, p.value FROM kine k "
            "LEFT JOIN kine p ON p.id = k.prev_revision "
            "WHERE k.resource = ? AND k.id > ? ORDER BY k.id", (resource, rv))
        for rev, event, value, old in rows:
            yield Revision(rev, event, json.loads(value), json.loads(old) if old else None)

    def compact(self, floor: int) -> None:
        """Move the floor up to `floor`, dropping the rows no watch from it can need: the
        ones replaced by a row at or below it, and deletions at or below it."""
        if floor <= self.floor:
            return
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        span = (self.floor, floor)
        self._db.execute("DELETE FROM kine WHERE id IN (SELECT prev_revision FROM kine "
                         "WHERE id > ? AND id <= ?)", span)
        self._db.execute("DELETE FROM kine WHERE id > ? AND id <= ? AND event = 'DELETED'",
                         span)
        self._db.execute("UPDATE compaction SET revision = ?", (floor,))
        self.floor = floor

    def _check_open(self) -> None:
        """A request still in flight when its server stopped meets a closed store: 503."""
        if self._closed:
            raise ApiError(503, "ServiceUnavailable", "the API's store is closed")

    def close(self) -> None:
        """Commit what is pending and release the file."""
        self.commit()
        self._closed = True
        self._db.close()
