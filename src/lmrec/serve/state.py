"""What the service knows at any moment: a bundle's model and data, plus every event in the store.

A user's history is their events in the bundle (every part of its split, in time order) followed by their
events in the store, in the order they were stored. Recommending re-runs the model on that history, so a
new event changes the next answer with no retraining: sequence models re-infer from the longer sequence,
profile models see the new item in the profile, and a user the bundle never saw gets answers from their
first event on. Dislikes are stored but never count as history.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmrec.bundle import Bundle, Recommendation
from lmrec.errors import ConfigError, LmrecError
from lmrec.serve.store import Event, EventStore, StoredEvent

EVENT_TYPES = ("view", "click", "cart", "purchase", "like", "rating", "dislike")
NOT_HISTORY = ("dislike",)  # stored, but never a reason to recommend similar items


class NotFound(LmrecError):
    """An id the service does not know; the message says what to do instead."""


class ServiceState:
    """Thread-safe: events are appended under a lock; answers read a consistent copy of a history."""

    def __init__(self, bundle: Bundle, store: EventStore):
        self.bundle, self.store, self.model = bundle, store, bundle.model
        self.items, self.users, self.titles = bundle.items, bundle.users, bundle.titles
        self.n_items = len(self.items)
        self.item_table = bundle.prepared.items
        self._extra: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.last_seq = 0
        self._apply(list(store.events()))

    # --- events ---------------------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Check, commit to the store, then update the users' histories (in that order: nothing counts that
        is not on disk)."""
        for e in events:
            if e.type not in EVENT_TYPES:
                raise ConfigError(f"event type {e.type!r} is not one of {', '.join(EVENT_TYPES)}")
            self.item_index(e.item)
        stored = self.store.append(events)
        self._apply(stored)
        return stored

    def _apply(self, stored: Sequence[StoredEvent]) -> None:
        with self._lock:
            for s in sorted(stored, key=lambda s: s.seq):
                if s.seq <= self.last_seq:
                    continue  # already applied (a retried event id, or a racing writer)
                self.last_seq = s.seq
                if s.type not in NOT_HISTORY and s.item in self.items:
                    self._extra.setdefault(s.user, []).append(self.items.index(s.item))

    # --- lookups --------------------------------------------------------------------------------------------
    def item_index(self, item: str) -> int:
        if item not in self.items:
            raise NotFound(f"unknown item {item!r}: this bundle's catalogue has {self.n_items:,} items "
                           "(GET /items/{id} looks one up)")
        return self.items.index(item)

    def knows_user(self, user: str) -> bool:
        return user in self.users or user in self._extra

    def history(self, user: str) -> np.ndarray:
        """Item indices of the user's history, oldest first."""
        base = self.bundle.histories[self.users.index(user)] if user in self.users else np.zeros(0, dtype=np.int64)
        with self._lock:
            extra = list(self._extra.get(user, ()))
        return np.concatenate([base, np.asarray(extra, dtype=np.int64)])

    def item(self, item: str) -> dict[str, Any]:
        i = self.item_index(item)
        return {"id": item, "title": str(self.titles[i]),
                "fields": {f: str(self.item_table[f][i]) for f in self.item_table.fields}}

    # --- answers --------------------------------------------------------------------------------------------
    def recommend(self, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
                  exclude_seen: bool = True, exclude: Sequence[int] = (),
                  filters: dict[str, str] | None = None) -> list[Recommendation]:
        """Top ``k`` for a known user (their whole history), an anonymous session (``history`` raw ids, oldest
        first), or both (the session follows the user's history)."""
        if user is None and history is None:
            raise ConfigError("give a user_id, a history, or both")
        seq = np.zeros(0, dtype=np.int64)
        if user is not None:
            if not self.knows_user(user):
                raise NotFound(f"unknown user {user!r}: send their events to POST /events first, or recommend "
                               "from their recent items with 'history'")
            seq = self.history(user)
        if history:
            seq = np.concatenate([seq, np.array([self.item_index(h) for h in history], dtype=np.int64)])
        index = self.users.index(user) if user is not None and user in self.users else None
        blocked = np.zeros(self.n_items, dtype=bool)
        if exclude_seen:
            blocked[seq] = True
        blocked[list(exclude)] = True
        for field, value in (filters or {}).items():
            if field not in self.item_table:
                raise ConfigError(f"filters: unknown item field {field!r}; fields are {self.item_table.fields}")
            blocked |= self.item_table[field] != value
        return self.bundle.recommend(seq, k, index, blocked)

    def similar(self, item: str, k: int = 10) -> list[Recommendation]:
        """What the model recommends to someone whose whole history is ``item`` (any model can answer)."""
        return self.recommend(history=[item], k=k, exclude=[self.item_index(item)])
