"""The agent's state on disk: every ENI and IP it owns, who holds each IP, the live pods'
addresses the cloud took (lost), and intents.

SQLite in WAL mode with `synchronous=NORMAL`: a committed transaction survives the agent
being killed at any instruction (only a power cut could lose the last one, and the
reconcile with the cloud recovers from that too). An intent row is written before each
cloud mutation and deleted after its result is committed, so a restarted agent knows which
calls may have happened without it hearing the answer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS enis (
    id TEXT PRIMARY KEY,
    mac TEXT NOT NULL,
    vswitch_id TEXT NOT NULL,
    cidr TEXT NOT NULL,          -- the vSwitch's, so a lease needs no cloud call
    primary_ip TEXT NOT NULL,
    status TEXT NOT NULL,        -- an EniStatus
    exclusive INTEGER NOT NULL,  -- 1: the whole ENI goes to one pod
    gateway TEXT NOT NULL DEFAULT ''  -- from metadata, once it shows the ENI attached
);
CREATE TABLE IF NOT EXISTS ips (
    address TEXT PRIMARY KEY,
    eni_id TEXT NOT NULL REFERENCES enis(id),
    ipv6 TEXT UNIQUE,
    state TEXT NOT NULL,         -- an IpState
    pod TEXT UNIQUE,             -- namespace/name; one address per pod
    container TEXT,
    since REAL NOT NULL,         -- when it entered this state
    reserve REAL,                -- seconds a fixed-IP pod's address waits after release
    reserved_until REAL
);
CREATE TABLE IF NOT EXISTS lost (
    address TEXT PRIMARY KEY,    -- still in the pod's netns: never handed out meanwhile
    pod TEXT UNIQUE NOT NULL,
    container TEXT,
    eni_id TEXT NOT NULL,        -- no reference: the cloud (and so the store) dropped it
    since REAL NOT NULL          -- when reconcile found it gone
);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    eni_id TEXT,
    token TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class EniStatus(StrEnum):
    """Where an ENI of ours is in its life on this node."""

    ATTACHING = "attaching"  # created or re-attached; not yet InUse here
    READY = "ready"  # attached: its addresses can be handed out
    DETACHING = "detaching"  # being given back: detach, then delete


class IpState(StrEnum):
    """Who an address is for."""

    IDLE = "idle"  # the warm pool's
    USED = "used"  # a pod's
    RESERVED = "reserved"  # kept for a fixed-IP pod that released it
    RELEASING = "releasing"  # being unassigned


@dataclass(frozen=True)
class EniRow:
    id: str
    mac: str
    vswitch_id: str
    cidr: str
    primary_ip: str
    status: EniStatus
    exclusive: bool
    gateway: str = ""  # known once ready


@dataclass(frozen=True)
class IpRow:
    address: str
    eni_id: str
    ipv6: str | None
    state: IpState
    pod: str | None
    container: str | None
    since: float
    reserve: float | None
    reserved_until: float | None


@dataclass(frozen=True)
class LostRow:
    """A live pod's address that the cloud no longer has (its ENI or the assignment went
    out of band): the pod keeps it until its sandbox is recreated."""

    address: str
    pod: str
    container: str | None
    eni_id: str
    since: float


@dataclass(frozen=True)
class Intent:
    id: int
    action: str
    eni_id: str | None
    token: str
    payload: dict[str, Any]
    created: float


class Store:
    """A thin, typed layer over one SQLite file; callers group writes with `tx()`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(enis)")}
        if "gateway" not in columns:  # a store from before gateways came from metadata:
            self.db.execute("ALTER TABLE enis ADD COLUMN gateway TEXT NOT NULL DEFAULT ''")
            # its ready ENIs are settled again by the next reconcile, which asks metadata
            self.db.execute("UPDATE enis SET status = ? WHERE status = ?",
                            (EniStatus.ATTACHING, EniStatus.READY))
        self._lock = threading.RLock()
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One atomic transaction (nested calls join the outer one)."""
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._depth == 1:
                    self.db.execute("ROLLBACK")
                raise
            else:
                if self._depth == 1:
                    self.db.execute("COMMIT")
            finally:
                self._depth -= 1

    # -- ENIs -------------------------------------------------------------------------

    def enis(self, eni_id: str | None = None) -> list[EniRow]:
        rows = self.db.execute("SELECT id, mac, vswitch_id, cidr, primary_ip, status, "
                               "exclusive, gateway FROM enis WHERE ? IS NULL OR id = ? "
                               "ORDER BY rowid", (eni_id, eni_id)).fetchall()
        return [EniRow(r[0], r[1], r[2], r[3], r[4], EniStatus(r[5]), bool(r[6]), r[7])
                for r in rows]

    def eni(self, eni_id: str) -> EniRow | None:
        return next(iter(self.enis(eni_id)), None)

    def put_eni(self, eni: EniRow) -> None:
        self.db.execute("INSERT OR REPLACE INTO enis VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (eni.id, eni.mac, eni.vswitch_id, eni.cidr, eni.primary_ip,
                         eni.status, int(eni.exclusive), eni.gateway))

    def set_eni_status(self, eni_id: str, status: EniStatus) -> None:
        self.db.execute("UPDATE enis SET status = ? WHERE id = ?", (status, eni_id))

    def set_eni_ready(self, eni_id: str, gateway: str) -> None:
        self.db.execute("UPDATE enis SET status = ?, gateway = ? WHERE id = ?",
                        (EniStatus.READY, gateway, eni_id))

    def drop_eni(self, eni_id: str) -> None:
        with self.tx():
            self.db.execute("DELETE FROM ips WHERE eni_id = ?", (eni_id,))
            self.db.execute("DELETE FROM enis WHERE id = ?", (eni_id,))

    # -- addresses --------------------------------------------------------------------

    def _select_ips(self, where: str, args: tuple[object, ...]) -> list[IpRow]:
        query = ("SELECT address, eni_id, ipv6, state, pod, container, since, reserve, "
                 f"reserved_until FROM ips WHERE {where} ORDER BY rowid")
        return [IpRow(r[0], r[1], r[2], IpState(r[3]), *r[4:])
                for r in self.db.execute(query, args)]

    def ips(self, state: IpState | None = None, eni_id: str | None = None) -> list[IpRow]:
        return self._select_ips("(? IS NULL OR state = ?) AND (? IS NULL OR eni_id = ?)",
                                (state, state, eni_id, eni_id))

    def ip(self, address: str) -> IpRow | None:
        return next(iter(self._select_ips("address = ?", (address,))), None)

    def held_by(self, pod: str) -> IpRow | None:
        return next(iter(self._select_ips("pod = ?", (pod,))), None)

    def add_ips(self, eni_id: str, addresses: list[str], now: float) -> None:
        self.db.executemany("INSERT OR IGNORE INTO ips (address, eni_id, state, since) "
                            "VALUES (?, ?, ?, ?)",
                            [(a, eni_id, IpState.IDLE, now) for a in addresses])

    def pair_ipv6(self, address: str, ipv6: str | None) -> None:
        self.db.execute("UPDATE ips SET ipv6 = ? WHERE address = ?", (ipv6, address))

    def set_ip(self, address: str, state: IpState, now: float, *, pod: str | None = None,
               container: str | None = None, reserve: float | None = None,
               reserved_until: float | None = None) -> None:
        self.db.execute("UPDATE ips SET state = ?, pod = ?, container = ?, since = ?, "
                        "reserve = ?, reserved_until = ? WHERE address = ?",
                        (state, pod, container, now, reserve, reserved_until, address))

    def drop_ips(self, addresses: list[str]) -> None:
        self.db.executemany("DELETE FROM ips WHERE address = ?", [(a,) for a in addresses])

    # -- addresses the cloud took from live pods ----------------------------------------

    def lose(self, rows: list[IpRow], now: float) -> None:
        """Move pods' addresses from the pool to the lost table, in one transaction."""
        with self.tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO lost (address, pod, container, eni_id, since) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.address, r.pod, r.container, r.eni_id, now) for r in rows if r.pod])
            self.drop_ips([r.address for r in rows])

    def lost(self, pod: str | None = None) -> list[LostRow]:
        rows = self.db.execute("SELECT address, pod, container, eni_id, since FROM lost "
                               "WHERE ? IS NULL OR pod = ? ORDER BY rowid", (pod, pod))
        return [LostRow(*r) for r in rows.fetchall()]

    def drop_lost(self, pods: list[str]) -> None:
        self.db.executemany("DELETE FROM lost WHERE pod = ?", [(p,) for p in pods])

    # -- intents ----------------------------------------------------------------------

    def add_intent(self, action: str, eni_id: str | None, token: str,
                   payload: dict[str, Any], now: float) -> int:
        cursor = self.db.execute(
            "INSERT INTO intents (action, eni_id, token, payload, created) "
            "VALUES (?, ?, ?, ?, ?)", (action, eni_id, token, json.dumps(payload), now))
        return int(cursor.lastrowid or 0)

    def finish_intent(self, intent_id: int) -> None:
        self.db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def intents(self) -> list[Intent]:
        rows = self.db.execute("SELECT id, action, eni_id, token, payload, created "
                               "FROM intents ORDER BY id").fetchall()
        return [Intent(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]
