"""What the service knows at any moment: a bundle's model and data, plus every event and item in the store.

A user's history is their events in the bundle (every part of its split, in time order) followed by their
events in the store, in the order they were stored. Recommending re-runs the model on that history, so a
new event changes the next answer with no retraining: sequence models re-infer from the longer sequence,
profile models see the new item in the profile, and a user the bundle never saw gets answers from their
first event on. Dislikes are stored but never count as history. Items added through the store are ranked
from their text by models that read it.

The store is the truth; a ``ServiceState`` is one process's copy of it. Before every answer it catches up
with what other workers (or a state that was just swapped out) committed, so every worker answers alike. A
bundle written by ``lmrec refit`` already holds the store's rows up to the sequence numbers it records, and
its state applies only the rows after them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.bundle import Bundle, Recommendation
from lmrec.errors import ConfigError, LmrecError, Unsupported
from lmrec.explain import Explanation, explain
from lmrec.progress import logger
from lmrec.retrieval import RetrievalKind, Retriever
from lmrec.serve.store import Event, EventStore, StoredEvent, StoredItem, user_hash

EVENT_TYPES = ("view", "click", "cart", "purchase", "like", "rating", "dislike")
NOT_HISTORY = ("dislike",)  # stored, but never a reason to recommend similar items


class NotFound(LmrecError):
    """An id the service does not know; the message says what to do instead."""


class ReadWriteLock:
    """Many readers (answers) or one writer (a change to the catalogue and model): adding an item must
    never be seen half done by a request scoring at the same time. A waiting writer goes before readers
    that arrive after it, so a steady stream of requests cannot hold an item back for ever."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class ServiceState:
    """Thread-safe: events are appended under a lock; answers read a consistent copy of a history."""

    def __init__(self, bundle: Bundle, store: EventStore, retrieval: RetrievalKind = "auto", int8_queries: bool = False,
                 history_parts: tuple[str, ...] | None = None):
        self.bundle, self.store, self.model = bundle, store, bundle.model
        bundle.history_parts = history_parts
        # what the online report groups by: the bundle folder, the model and when it was trained
        self.version = f"{bundle.path.name}:{bundle.model.name}:{bundle.meta.get('created', '?')}"
        bundle.retriever = Retriever(bundle.model, retrieval)
        if int8_queries:
            if not hasattr(self.model, "int8_queries"):
                raise Unsupported(f"the {self.model.name!r} model reads no free text: int8 queries do not apply")
            self.model.int8_queries = True
        if hasattr(self.model, "query_encoder"):  # load the text encoder now, not in the first query's time
            self.model.query_encoder().encode(["warm-up"])
        self.users = bundle.users
        folded = bundle.meta.get("store", {})  # what a refit bundle already holds
        self.last_seq = int(folded.get("events_through", 0))
        self.last_item_seq = int(folded.get("items_through", 0))
        self._extra: dict[str, list[int]] = {}
        # users deleted from the store: what the bundle's data hold about them is no longer used (their
        # history, their trained user vector); new events of the same id start a new history
        self._forgotten: set[str] = set()
        self.last_forgotten_seq = int(folded.get("forgotten_through", 0))  # deletions a refit already applied
        self._bundle_user_hashes: dict[str, str] | None = None  # computed at the first deletion seen
        self._lock = threading.Lock()  # histories
        self._catalogue = ReadWriteLock()  # the catalogue and the model's item side
        self._item_sync = threading.Lock()
        self.sync()

    @property
    def items(self) -> Any:
        return self.bundle.items

    @property
    def titles(self) -> np.ndarray:
        return self.bundle.titles

    @property
    def n_items(self) -> int:
        return len(self.bundle.items)

    # --- catching up with the store -------------------------------------------------------------------------
    def sync(self) -> None:
        """Apply what the store holds beyond this copy: items first (events may name them), then events."""
        items = self.store.items(after=self.last_item_seq)
        if items:
            self._apply_items(items)
        self._apply_forgotten()
        self._apply_events()

    def _apply_items(self, stored: Sequence[StoredItem], encoded: dict[str, np.ndarray] | None = None) -> None:
        """Add stored items to the catalogue, in store order; ``encoded``: vectors already computed, by id."""
        with self._item_sync, self._catalogue.write():
            todo = [s for s in stored if s.seq > self.last_item_seq and s.item not in self.bundle.items]
            if todo:
                known = encoded or {}
                vectors = np.concatenate([known[s.item] for s in todo]) if all(s.item in known for s in todo) else None
                try:
                    self.bundle.add_items([s.item for s in todo], [s.fields for s in todo], vectors)
                except LmrecError as exc:  # e.g. after a reload to a model that cannot read text
                    logger.warning("%d stored item(s) cannot be served by this model: %s", len(todo), exc)
            if stored:
                self.last_item_seq = max(self.last_item_seq, max(s.seq for s in stored))

    # --- writes ---------------------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Check, commit to the store, then update the users' histories (in that order: nothing counts that
        is not on disk)."""
        self.sync()
        for e in events:
            if e.type not in EVENT_TYPES:
                raise ConfigError(f"event type {e.type!r} is not one of {', '.join(EVENT_TYPES)}")
            self.item_index(e.item)
        stored = self.store.append(events)
        self._apply_events()
        return stored

    def add_item(self, item: str, fields: dict[str, str]) -> int:
        """A cold-start item: checked and encoded first, committed, then rankable at once; its index."""
        self.sync()
        vectors = self.bundle.new_items([item], [fields])  # refuses models that cannot rank it; changes nothing
        self.store.add_item(item, fields)
        self._apply_items(self.store.items(after=self.last_item_seq), {item: vectors})
        return self.items.index(item)

    def _apply_events(self) -> None:
        """Apply the store's events after ``last_seq``, in order. Always read back from the store, never from a
        writer's own list: two writers commit seq 10 and 11, and the one with 11 may get here first; reading
        under the lock applies 10 before 11 whoever comes first (a committed seq is never behind a gap)."""
        with self._lock:
            for s in self.store.events(after=self.last_seq):
                self.last_seq = s.seq
                if s.type not in NOT_HISTORY and s.item in self.items:
                    self._extra.setdefault(s.user, []).append(self.items.index(s.item))

    def forget(self, user: str) -> dict[str, Any]:
        """Delete ``user`` from the store (events, served lists) and from this state; what was deleted, and
        whether the served bundle's own data hold the user (then only a refit removes them from the model)."""
        self.sync()
        if not self.knows_user(user):
            raise NotFound(f"unknown user {user!r}: nothing to delete")
        in_bundle = user in self.users
        deleted = self.store.forget(user)
        self._apply_forgotten()
        return {**deleted, "in_bundle": in_bundle}

    def _apply_forgotten(self) -> None:
        rows = self.store.forgotten(after=self.last_forgotten_seq)
        if not rows:
            return
        with self._lock:
            if self._bundle_user_hashes is None:
                self._bundle_user_hashes = {user_hash(u): u for u in self.users.to_list()}
            extra = {user_hash(u): u for u in self._extra}
            for seq, h in rows:
                for found in (self._bundle_user_hashes.get(h), extra.get(h)):
                    if found is not None:
                        self._forgotten.add(found)
                        self._extra.pop(found, None)
                self.last_forgotten_seq = max(self.last_forgotten_seq, seq)

    def bundle_row(self, user: str | None) -> int | None:
        """The user's row in the bundle's data, unless there is none or the user was deleted."""
        if user is None or user in self._forgotten or user not in self.users:
            return None
        return self.users.index(user)

    # --- lookups --------------------------------------------------------------------------------------------
    def item_index(self, item: str) -> int:
        if item not in self.items:
            raise NotFound(f"unknown item {item!r}: this catalogue has {self.n_items:,} items "
                           "(GET /items/{id} looks one up; POST /items adds one)")
        return self.items.index(item)

    def knows_user(self, user: str) -> bool:
        return self.bundle_row(user) is not None or user in self._extra

    def history(self, user: str) -> np.ndarray:
        """Item indices of the user's history, oldest first."""
        row = self.bundle_row(user)
        base = self.bundle.histories[row] if row is not None else np.zeros(0, dtype=np.int64)
        with self._lock:
            extra = list(self._extra.get(user, ()))
        return np.concatenate([base, np.asarray(extra, dtype=np.int64)])

    def item(self, item: str) -> dict[str, Any]:
        i = self.item_index(item)
        table = self.bundle.catalogue
        return {"id": item, "title": str(self.titles[i]), "fields": {f: str(table[f][i]) for f in table.fields}}

    # --- answers --------------------------------------------------------------------------------------------
    def recommend(self, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
                  exclude_seen: bool = True, exclude: Sequence[int] = (),
                  filters: dict[str, str] | None = None, query: str | None = None) -> list[Recommendation]:
        """Top ``k`` for a known user (their whole history), an anonymous session (``history`` raw ids, oldest
        first), free text (``query``, for models that read text), or a mix (the session follows the user's
        history; the query follows both)."""
        if user is None and history is None and query is None:
            raise ConfigError("give a user_id, a history or a query (or a mix)")
        with self._catalogue.read():
            seq = self._sequence(user, history)
            index = self.bundle_row(user)
            blocked = np.zeros(self.n_items, dtype=bool)
            if exclude_seen:
                blocked[seq] = True
            blocked[list(exclude)] = True
            table = self.bundle.catalogue
            for field, value in (filters or {}).items():
                if field not in table:
                    raise ConfigError(f"filters: unknown item field {field!r}; fields are {table.fields}")
                blocked |= table[field] != value
            return self.bundle.recommend(seq, k, index, blocked, text=query)

    def explain(self, item: str, user: str | None = None, history: Sequence[str] | None = None) -> Explanation:
        """Why ``item`` scores as it does for a known user, a session, or both (``lmrec.explain``)."""
        if user is None and not history:
            raise ConfigError("give a user_id or a history to explain a recommendation for")
        with self._catalogue.read():
            target = self.item_index(item)
            seq = self._sequence(user, history)
            if len(seq) == 0:
                raise ConfigError("the history is empty: there is nothing to attribute the score to")
            row = self.bundle_row(user)
            index = row if row is not None else len(self.users)
            return explain(self.model, seq, target, index, self.bundle.catalogue)

    def _sequence(self, user: str | None, history: Sequence[str] | None) -> np.ndarray:
        """The user's history (a known user) followed by the session's items, as item indices."""
        seq = np.zeros(0, dtype=np.int64)
        if user is not None:
            if not self.knows_user(user):
                raise NotFound(f"unknown user {user!r}: send their events to POST /events first, or recommend "
                               "from their recent items with 'history'")
            seq = self.history(user)
        if history:
            seq = np.concatenate([seq, np.array([self.item_index(h) for h in history], dtype=np.int64)])
        return seq

    def similar(self, item: str, k: int = 10) -> list[Recommendation]:
        """What the model recommends to someone whose whole history is ``item`` (any model can answer)."""
        return self.recommend(history=[item], k=k, exclude=[self.item_index(item)])


class Service:
    """The state the handlers read, swapped whole when the service reloads a bundle; with an A/B test, a
    second state (arm B) that answers the users a stable hash assigns to it.

    The store's ``serving`` row names the bundle every worker serves: a reload in one worker bumps its
    generation, and the others load the same bundle when they see it. A worker keeps answering from its
    old state while the new one loads, so no request fails during a swap.
    """

    def __init__(self, bundle_dir: str | Path, store: EventStore, retrieval: RetrievalKind = "auto",
                 int8_queries: bool = False, ab: str | Path | None = None, split: float = 0.5,
                 history_parts: tuple[str, ...] | None = None):
        if not 0.0 < split < 1.0:
            raise ConfigError(f"the A/B split is the share of users in arm B, strictly between 0 and 1; got {split}")
        self.store, self.split = store, split
        self.options = {"retrieval": retrieval, "int8_queries": int8_queries, "history_parts": history_parts}
        generation, serving = store.serving()
        path = str(Path(bundle_dir).resolve())
        if serving != path:  # started on another bundle than the store last served: that is the operator's choice
            generation = store.set_serving(path)
        self.generation, self.bundle_dir = generation, Path(path)
        self.state = ServiceState(Bundle.load(path), store, **self.options)
        self.arm_b = ServiceState(Bundle.load(ab), store, **self.options) if ab is not None else None
        self._reloading = threading.Lock()

    def arm_of(self, user: str | None) -> str:
        """``"A"`` or ``"B"``: the same for a user in every process and run (a hash of the id, not random);
        anonymous sessions get A."""
        if self.arm_b is None or user is None:
            return "A"
        position = int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big") / 2**64
        return "B" if position < self.split else "A"

    def for_user(self, user: str | None) -> tuple[str, ServiceState]:
        """The arm and state that answer ``user``, caught up with the store."""
        state = self.current()
        arm = self.arm_of(user)
        if arm == "B":
            assert self.arm_b is not None
            self.arm_b.sync()
            return arm, self.arm_b
        return arm, state

    def current(self) -> ServiceState:
        """The state to answer from (arm A), caught up with the store."""
        generation, path = self.store.serving()
        if generation != self.generation and path is not None and self._reloading.acquire(blocking=False):
            try:  # another worker reloaded: follow it (other threads meanwhile answer from the old state)
                if generation != self.generation:
                    self._swap(Path(path), generation)
            finally:
                self._reloading.release()
        state = self.state
        state.sync()
        return state

    def reload(self, bundle_dir: str | Path) -> ServiceState:
        """Load ``bundle_dir`` (checked in full), then swap it in for every worker."""
        if self.arm_b is not None:
            raise Unsupported("this service runs an A/B test: its arms are fixed; restart it to change them")
        with self._reloading:
            path = Path(bundle_dir).resolve()
            state = ServiceState(Bundle.load(path), self.store, **self.options)
            self.state, self.bundle_dir = state, path
            self.generation = self.store.set_serving(str(path))
            logger.info("now serving %s (%s)", path, state.model.name)
        state.sync()
        return state

    def _swap(self, path: Path, generation: int) -> None:
        try:
            state = ServiceState(Bundle.load(path), self.store, **self.options)
        except LmrecError as exc:
            logger.error("cannot follow the reload to %s: %s; still serving %s", path, exc, self.bundle_dir)
            self.generation = generation  # do not retry on every request
            return
        self.state, self.bundle_dir, self.generation = state, path, generation
