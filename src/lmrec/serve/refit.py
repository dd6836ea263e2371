"""``lmrec refit``: a bundle trained again on its own data plus what the service stored since.

The new bundle's data are the old bundle's events (every part) and items, then the store's items and events
after the sequence numbers the old bundle already holds, over id maps that keep every old index. The model
is the old one's kind and configuration (options may be changed), warm-started from its weights where it
trains iteratively (sequence models); others fit again from scratch. Validation, for early stopping and the
metrics it reports, is each user's most recent stored event; everything before it trains.

Users deleted from the store (``lmrec forget``, ``DELETE /users/{id}``) are left out: their events in the old
bundle's data are dropped and their raw id in the user map is replaced by a placeholder (``forgotten-N``,
keeping every other index), their row in the user table emptied; so the new bundle holds no trace of them.

The bundle records how far into the store it reaches (``store.events_through``, ``items_through``,
``forgotten_through``), so a service that loads it applies only the rows after those and counts no event
twice; a deletion is applied to the data held when it was made, so a user who comes back after being deleted
keeps their new events in the next refit.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.bundle import Bundle, write_bundle
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.prepared import Prepared, write_prepared
from lmrec.data.split import Split
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator
from lmrec.progress import logger, report
from lmrec.registry import create
from lmrec.serve.state import NOT_HISTORY
from lmrec.serve.store import EventStore, user_hash

VALID_KS = (10, 20)


def refit(bundle_dir: str | Path, store_path: str | Path, out: str | Path, params: dict[str, Any] | None = None,
          ) -> tuple[Path, dict[str, Any]]:
    """Write the refit bundle to ``out`` (the old folder may be ``out``: it is replaced atomically, and a
    service can then reload it); returns its path and metrics."""
    store_path = Path(store_path)
    if not store_path.is_file():
        raise ConfigError(f"{store_path}: no event store there (the service writes BUNDLE.events.sqlite beside "
                          "the bundle unless started with --store)")
    old = Bundle.load(bundle_dir)
    store = EventStore(store_path)
    try:
        prepared, through = _combined(old, store)
    finally:
        store.close()
    config = {**old.model.config.model_dump(), **(params or {})}
    model = create(old.model.name, ("ranker",), **config)
    warm = model.warm_start(old.model)
    split = prepared.split
    validation = Evaluator(split, "valid", ks=VALID_KS) if len(split.valid) else None
    if validation is None:
        logger.warning("refit: no stored event can validate (each user's most recent one, for users with "
                       "history before it); the model fits without early stopping")
    started = time.perf_counter()
    model.fit(split.train, prepared.items, validation=validation if model.uses_validation else None)
    fit_seconds = time.perf_counter() - started
    report("refit %s on %d events (%d from the store) in %.1f s%s", model.name, len(split.train),
           through["new_events"], fit_seconds, ", warm-started" if warm else "")
    result = getattr(model, "train_result_", None)
    metrics = {"refit": {**through, "warm_start": warm, "from_bundle": str(Path(bundle_dir).resolve()),
                         "from_created": old.meta.get("created")},
               "valid": validation.evaluate(model, name=model.name).means() if validation is not None else {},
               "fit_seconds": fit_seconds, "valid_curve": result.history if result is not None else [],
               "best_epoch": result.best_epoch if result is not None else None, "ks": list(VALID_KS)}
    run_config = {"dataset": prepared.config.model_dump(), "model": model.name, "params": model.config.model_dump(),
                  "ks": list(VALID_KS), "refit_of": str(Path(bundle_dir).resolve()), "store": str(store_path.resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        write_prepared(Path(tmp) / "data", prepared.config, prepared.key, split, prepared.items, prepared.users,
                       prepared.stats, {})
        prepared.path = Path(tmp) / "data"
        path = write_bundle(out, model, prepared, run_config, metrics,
                            store={"path": str(store_path.resolve()), "events_through": through["events_through"],
                                   "items_through": through["items_through"],
                                   "forgotten_through": through["forgotten_through"]})
    return path, metrics


def _combined(old: Bundle, store: EventStore) -> tuple[Prepared, dict[str, Any]]:
    """The old bundle's data plus the store's rows after what it already holds, split for the refit."""
    folded = old.meta.get("store", {})
    stored_items = store.items(after=int(folded.get("items_through", 0)))
    catalogue = old.prepared.items
    fresh = [s for s in stored_items if s.item not in catalogue.ids]
    if fresh:
        catalogue = catalogue.appended([s.item for s in fresh], [s.fields for s in fresh])
    events = list(store.events(after=int(folded.get("events_through", 0))))
    items: IdMap = catalogue.ids
    deletions = store.forgotten(after=int(folded.get("forgotten_through", 0)))
    base, user_table, n_forgotten = _without_forgotten(old.prepared.interactions, old.prepared.users,
                                                       {h for _, h in deletions})
    labelled = base.label is not None
    unknown = sum(e.item not in items for e in events)
    if unknown:
        logger.warning("refit: %d stored event(s) name items the catalogue does not hold; left out", unknown)
    kept = [e for e in events if e.item in items and (labelled or e.type not in NOT_HISTORY)]
    users = base.users.extend([e.user for e in kept])
    new = _interactions(kept, base, users, items)
    old_events = Interactions(base.user, base.item, users, items, time=base.time, rating=base.rating,
                              label=base.label, time_unit=base.time_unit)
    split = _split(old_events, new, n_old=len(old_events))
    if user_table is not None and len(users) > len(user_table):
        user_table = user_table.appended(users.to_list()[len(user_table):], [{}] * (len(users) - len(user_table)))
        assert isinstance(user_table, UserTable)
    assert isinstance(catalogue, ItemTable)
    through = {"events_through": max([int(folded.get("events_through", 0))] + [e.seq for e in events]),
               "items_through": max([int(folded.get("items_through", 0))] + [s.seq for s in stored_items]),
               "new_events": len(kept), "new_items": len(fresh), "new_users": len(users) - len(base.users),
               "forgotten_through": max([int(folded.get("forgotten_through", 0))] + [seq for seq, _ in deletions]),
               "forgotten_users": n_forgotten}
    key = hashlib.sha256(f"{old.prepared.key}|refit|{through['events_through']}|{through['items_through']}"
                         .encode()).hexdigest()
    stats = {**old.prepared.stats, "split": split.summary(), "refit": through}
    prepared = Prepared(old.prepared.name, old.prepared.config, key, split, catalogue, user_table, stats,
                        old.prepared.path)
    return prepared, through


def _without_forgotten(base: Interactions, users: UserTable | None, forgotten: set[str],
                       ) -> tuple[Interactions, UserTable | None, int]:
    """``base`` without the events of users whose id hash is in ``forgotten``, their raw ids replaced by
    placeholders (indices kept); the user table with their rows emptied; and how many users that was."""
    raw = base.users.to_list()
    gone = np.array([user_hash(u) in forgotten for u in raw], dtype=bool)
    if not gone.any():
        return base, users, 0
    taken, ids, n = set(raw), [], 0
    for u, g in zip(raw, gone):
        if g:
            while f"forgotten-{n}" in taken:  # a real user could be called that
                n += 1
            u, n = f"forgotten-{n}", n + 1
        ids.append(u)
    user_map = IdMap(ids, name="user")
    keep = ~gone[base.user]
    cleaned = Interactions(base.user[keep], base.item[keep], user_map, base.items,
                           time=None if base.time is None else base.time[keep],
                           rating=None if base.rating is None else base.rating[keep],
                           label=None if base.label is None else base.label[keep], time_unit=base.time_unit)
    if users is not None:
        fields = {}
        for f in users.fields:
            column = users[f].copy()
            column[gone[:len(column)]] = ""
            fields[f] = column
        users = UserTable(user_map.subset(np.arange(len(users))), fields)
    return cleaned, users, int(gone.sum())


def _interactions(events: list[Any], base: Interactions, users: IdMap, items: IdMap) -> Interactions:
    """Stored events as interactions with the old data's columns: times in its unit (an order continues each
    user's), a rating (the event's value, else the highest rating: an action taken counts as liked), a
    label (0 for a dislike) when the data are labelled."""
    n = len(events)
    user = np.array([users.index(e.user) for e in events], dtype=np.int64)
    item = np.array([items.index(e.item) for e in events], dtype=np.int64)
    times = None
    if base.time is not None:
        if base.time_unit == "s":
            times = np.array([e.time for e in events], dtype=np.int64)
        else:  # positions in each user's sequence: carry on after the user's last one
            last = {}
            for u, t in zip(base.user, base.time):
                last[u] = max(last.get(u, -1), int(t))
            times = np.empty(n, dtype=np.int64)
            for i, u in enumerate(user):
                last[u] = last.get(u, -1) + 1
                times[i] = last[u]
    rating = None
    if base.rating is not None:
        top = float(np.nanmax(base.rating)) if len(base.rating) else 1.0
        rating = np.array([top if e.value is None else e.value for e in events], dtype=np.float32)
    label = None if base.label is None else np.array([0 if e.type in NOT_HISTORY else 1 for e in events], dtype=np.int8)
    return Interactions(user, item, users, items, time=times, rating=rating, label=label, time_unit=base.time_unit)


def _split(old: Interactions, new: Interactions, n_old: int) -> Split:
    """Valid: each user's most recent new (positive) event when the user has history before it; train: the
    rest of old and new. No test part: the refit reports validation metrics."""
    both = Interactions.concat([old, new])
    is_new = np.arange(len(both)) >= n_old
    positive = np.ones(len(both), dtype=bool) if both.label is None else both.label == 1
    order = both.chronological_order()
    last_new = {}
    for row in order:  # the last row of each user in time order among the new positives
        if is_new[row] and positive[row]:
            last_new[int(both.user[row])] = row
    valid = np.zeros(len(both), dtype=bool)
    valid[list(last_new.values())] = True
    # a target must be findable: the user has history before it, and the item is not in it already (ranking
    # leaves the history out)
    before = {(int(u), int(i)) for u, i, p in zip(both.user[~valid], both.item[~valid], positive[~valid]) if p}
    with_history = {u for u, _ in before}
    for u, row in last_new.items():
        if u not in with_history or (u, int(both.item[row])) in before:
            valid[row] = False
    empty = both.select(np.zeros(len(both), dtype=bool))
    return Split(both.select(~valid), both.select(valid), empty, name="refit")
