"""The event store: every feedback event the service acknowledges, in SQLite (WAL, ``synchronous=FULL``).

An event is committed before its request is answered, so an acknowledged event survives a crash of the
process (and, with ``synchronous=FULL``, of the machine). A client may give each event an ``id``: a retry
of an event whose answer was lost is then stored once, not twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lmrec.errors import ConfigError

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
"""


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


class EventStore:
    """One SQLite file; safe to share between the threads of one process (writes are serialised)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged event is on disk
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: cannot be used as an event store ({exc})") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
