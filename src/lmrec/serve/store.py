"""The service's store: every feedback event and every item it acknowledges, in SQLite (WAL,
``synchronous=FULL``).

A write is committed before its request is answered, so an acknowledged event or item survives a crash of
the process (and, with ``synchronous=FULL``, of the machine). A client may give each event an ``id``: a
retry of an event whose answer was lost is then stored once, not twice.

The store is also what the workers of one service share: each keeps its in-memory state and catches up
with the rows after the last sequence number it applied (``events(after=...)``, ``items(after=...)``), and
the ``serving`` row names the bundle all of them serve (``POST /admin/reload`` changes it).

Deleting a user (``forget``): their events and served lists are deleted with SQLite's ``secure_delete`` (the
freed pages are overwritten), the file is vacuumed and the write-ahead log truncated, so the raw id is gone
from the store's bytes. What remains is a row in ``forgotten`` holding a one-way hash of the id, which tells
every worker, and ``lmrec refit``, to drop what the served bundle's own data hold about that user.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrec.errors import ConfigError, LmrecError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    user TEXT NOT NULL,
    item TEXT NOT NULL,
    type TEXT NOT NULL,
    value REAL,
    time INTEGER NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, seq);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT UNIQUE NOT NULL,
    fields TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS served (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    user TEXT NOT NULL,
    items TEXT NOT NULL,
    arm TEXT NOT NULL,
    model TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS served_by_user ON served (user, time);
CREATE TABLE IF NOT EXISTS forgotten (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_hash TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS serving (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    bundle TEXT NOT NULL
);
"""


def user_hash(user: str) -> str:
    """What the store keeps of a deleted user's id: a SHA-256 that matches the id without holding it."""
    return hashlib.sha256(f"lmrec-forgotten-user:{user}".encode()).hexdigest()


class Conflict(LmrecError):
    """A write that would replace what is already stored."""


@dataclass(frozen=True)
class Event:
    """One piece of feedback: ``user`` did ``type`` to ``item`` at ``time`` (unix seconds)."""

    user: str
    item: str
    type: str = "view"
    value: float | None = None
    time: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    user: str
    item: str
    type: str
    value: float | None
    time: int


@dataclass(frozen=True)
class ServedList:
    """A list the service answered a known user with (``model``: name and bundle generation)."""

    request_id: str
    user: str
    items: tuple[str, ...]
    arm: str
    model: str
    time: float


@dataclass(frozen=True)
class StoredItem:
    seq: int
    item: str
    fields: dict[str, str]


class EventStore:
    """One SQLite file; safe to share between the threads of one process (writes are serialised)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged event is on disk
            self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not just unlinked
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: cannot be used as an event store ({exc})") from None
        self._lock = threading.Lock()
        # Served lists are measurements, not acknowledged writes: their own connection commits without
        # waiting for the disk (WAL + synchronous=NORMAL: never corrupt, the last few may be lost in a power
        # cut), so logging them costs a recommendation little.
        self._log = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._log.execute("PRAGMA synchronous=NORMAL")
        self._log.execute("PRAGMA secure_delete=ON")
        self._log_lock = threading.Lock()

    def close(self) -> None:
        with self._lock, self._log_lock:
            self._db.close()
            self._log.close()

    # --- served lists (online evaluation) ---------------------------------------------------------------------
    def log_served(self, served: ServedList) -> None:
        with self._log_lock:
            self._log.execute("INSERT INTO served (request_id, user, items, arm, model, time) VALUES (?, ?, ?, ?, ?, ?)",
                              (served.request_id, served.user, json.dumps(list(served.items)), served.arm,
                               served.model, served.time))

    def served(self) -> list[ServedList]:
        """Every logged list, oldest first."""
        with self._log_lock:
            rows = self._log.execute("SELECT request_id, user, items, arm, model, time FROM served ORDER BY seq").fetchall()
        return [ServedList(r, u, tuple(json.loads(i)), a, m, t) for r, u, i, a, m, t in rows]

    def per_minute(self, minutes: int, now: float | None = None) -> dict[str, Any]:
        """Events and served lists per minute over the last ``minutes`` (oldest first), and the totals."""
        now = time.time() if now is None else now
        since = now - 60 * minutes

        def counts(table: str, column: str) -> list[int]:
            rows = self._db.execute(f"SELECT CAST(({column} - ?) / 60 AS INTEGER), COUNT(*) FROM {table} "
                                    f"WHERE {column} >= ? GROUP BY 1", (since, since)).fetchall()
            out = [0] * minutes
            for minute, n in rows:
                out[min(int(minute), minutes - 1)] += int(n)
            return out

        with self._lock:
            events, lists = counts("events", "received"), counts("served", "time")
            totals = self._db.execute("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM served)").fetchone()
        return {"minutes": minutes, "events_per_minute": events, "lists_per_minute": lists,
                "events_total": int(totals[0]), "lists_total": int(totals[1])}

    def timed_events(self) -> list[tuple[str, str, str, float]]:
        """``(user, item, type, received)`` of every event, in store order (the service's clock, as served lists)."""
        with self._lock:
            return self._db.execute("SELECT user, item, type, received FROM events ORDER BY seq").fetchall()

    def append(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Commit ``events`` in one transaction; returns them as stored (a repeated ``id`` is stored once
        and returned as first stored)."""
        now = time.time()
        out = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    t = int(now) if e.time is None else int(e.time)
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events (event_id, user, item, type, value, time, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (e.id, e.user, e.item, e.type, e.value, t, now))
                    if cur.rowcount == 0:  # a retry of an event already stored
                        row = self._db.execute("SELECT seq, user, item, type, value, time FROM events "
                                               "WHERE event_id = ?", (e.id,)).fetchone()
                        out.append(StoredEvent(*row))
                    else:
                        out.append(StoredEvent(int(cur.lastrowid or 0), e.user, e.item, e.type, e.value, t))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def events(self, user: str | None = None, after: int = 0) -> Iterator[StoredEvent]:
        """Stored events in the order they were stored (all, or one user's), from ``seq > after``."""
        query = "SELECT seq, user, item, type, value, time FROM events WHERE seq > ?"
        args: tuple = (after,)
        if user is not None:
            query += " AND user = ?"
            args += (user,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return (StoredEvent(*r) for r in rows)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when there is none)."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    # --- items added after training -----------------------------------------------------------------------
    def add_item(self, item: str, fields: dict[str, str]) -> StoredItem:
        """Commit a new item; an id already stored raises ``ConfigError`` (items are never replaced)."""
        with self._lock:
            try:
                cur = self._db.execute("INSERT INTO items (item, fields, added) VALUES (?, ?, ?)",
                                       (item, json.dumps(fields, sort_keys=True), time.time()))
            except sqlite3.IntegrityError:
                raise Conflict(f"item {item!r} is already in the catalogue (items are never replaced)") from None
        return StoredItem(int(cur.lastrowid or 0), item, dict(fields))

    def items(self, after: int = 0) -> list[StoredItem]:
        """Added items in the order they were added, from ``seq > after``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, item, fields FROM items WHERE seq > ? ORDER BY seq", (after,)).fetchall()
        return [StoredItem(seq, item, json.loads(fields)) for seq, item, fields in rows]

    # --- deleting a user -------------------------------------------------------------------------------------
    def forget(self, user: str) -> dict[str, int]:
        """Delete ``user``'s events and served lists, record the hash of the id in ``forgotten``, then vacuum
        and truncate the write-ahead log so no copy of the rows is left in the files; the counts deleted."""
        with self._lock, self._log_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                events = self._db.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
                served = self._db.execute("DELETE FROM served WHERE user = ?", (user,)).rowcount
                self._db.execute("INSERT INTO forgotten (user_hash, time) VALUES (?, ?)", (user_hash(user), time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"events": int(events), "served": int(served)}

    def forgotten(self, after: int = 0) -> list[tuple[int, str]]:
        """``(seq, user hash)`` of every deletion after ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, user_hash FROM forgotten WHERE seq > ? ORDER BY seq", (after,)).fetchall()
        return [(int(seq), str(h)) for seq, h in rows]

    # --- the bundle every worker serves ---------------------------------------------------------------------
    def serving(self) -> tuple[int, str | None]:
        """``(generation, bundle path)``; ``(0, None)`` before any reload."""
        with self._lock:
            row = self._db.execute("SELECT generation, bundle FROM serving WHERE id = 1").fetchone()
        return (0, None) if row is None else (int(row[0]), str(row[1]))

    def set_serving(self, bundle: str) -> int:
        """Record that the service now serves ``bundle``; returns the new generation."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT generation FROM serving WHERE id = 1").fetchone()
                generation = (0 if row is None else int(row[0])) + 1
                self._db.execute("INSERT OR REPLACE INTO serving (id, generation, bundle) VALUES (1, ?, ?)",
                                 (generation, bundle))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return generation
