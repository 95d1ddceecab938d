"""The cloud model on disk: a SQLite file in WAL mode that mirrors `Cloud`'s mutable state
(its ENIs, ClientToken answers and id counter), so a cloud whose process was killed comes
back as it was.

The model stays in memory and writes through: each mutation's rows go in one transaction,
committed before the mutation's lock is released, so a kill -9 at any point leaves the
state before or after that call, never half of it. Free addresses are not stored: they
are what no ENI holds. `synchronous=NORMAL` survives a killed process (not a power cut),
which is all a lab outlives.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS enis (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (action TEXT NOT NULL, token TEXT NOT NULL,
    request TEXT NOT NULL, answer TEXT NOT NULL, PRIMARY KEY (action, token));
"""

Row = dict[str, Any]


@dataclass(frozen=True)
class Saved:
    """What a state file holds: ENIs in creation order, token answers, the next ENI id."""

    world: str
    enis: list[Row]
    tokens: dict[tuple[str, str], tuple[str, Any]]
    next_id: int


class StateFile:
    """One cloud's state file; callers serialise access (the model holds its lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def load(self) -> Saved | None:
        """The saved state, or None for a new file."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "world" not in meta:
            return None
        enis = [json.loads(body) for body, in
                self._db.execute("SELECT body FROM enis ORDER BY rowid")]
        tokens = {(action, token): (request, json.loads(answer)) for action, token, request,
                  answer in self._db.execute("SELECT action, token, request, answer FROM tokens")}
        return Saved(meta["world"], enis, tokens, int(meta["next_id"]))

    def write(self, *, world: str | None = None, next_id: int, enis: Iterable[Row] = (),
              deleted: Iterable[str] = (),
              tokens: Iterable[tuple[str, str, str, Any]] = (), clear: bool = False) -> None:
        """One transaction: ENIs upserted (an updated ENI keeps its place) or deleted, new
        token answers, the id counter; `clear` first empties the file (a reset)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if clear:
                for table in ("meta", "enis", "tokens"):
                    db.execute(f"DELETE FROM {table}")
            if world is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('world', ?)", (world,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)", (str(next_id),))
            db.executemany("INSERT INTO enis VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                           "body = excluded.body",
                           [(row["id"], json.dumps(row)) for row in enis])
            db.executemany("DELETE FROM enis WHERE id = ?", [(i,) for i in deleted])
            db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
                           [(a, t, r, json.dumps(answer)) for a, t, r, answer in tokens])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
