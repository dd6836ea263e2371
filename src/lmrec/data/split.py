"""Train / valid / test splits and the functions that make them.

A ``Split`` holds three ``Interactions`` over the same id maps, plus an optional ``context``: the
histories of users who are absent from training (cold-start users). Context may be fed to a model as
input at inference time but is never fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.errors import ConfigError, DataError

PARTS = ("train", "valid", "test", "context")
TEMPORAL_NEEDS_TIMES = ("a temporal split needs real timestamps; this dataset only has an order "
                        "(use --split loo, or a dataset with timestamps)")


@dataclass
class Split:
    """Train / valid / test interactions (and optional cold-user context) over shared id maps."""

    train: Interactions
    valid: Interactions
    test: Interactions
    context: Interactions | None = None
    name: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part, inter in self.parts().items():
            if inter.users != self.train.users or inter.items != self.train.items:
                raise DataError(f"split part {part!r} uses different id maps from train")

    def parts(self) -> dict[str, Interactions]:
        """The non-empty parts by name (``context`` only when present)."""
        out = {"train": self.train, "valid": self.valid, "test": self.test}
        if self.context is not None:
            out["context"] = self.context
        return out

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def users(self, part: str = "test") -> np.ndarray:
        """Sorted user indices that have interactions in ``part``."""
        return self._part(part).user_ids()

    def items(self, part: str = "test") -> np.ndarray:
        """Sorted item indices that occur in ``part``."""
        return self._part(part).item_ids()

    def cold_items(self, part: str = "test") -> np.ndarray:
        """Items of ``part`` that never occur in train (cold-start items)."""
        return np.setdiff1d(self.items(part), self.train.item_ids(), assume_unique=True)

    def cold_users(self, part: str = "test") -> np.ndarray:
        """Users of ``part`` with no training interaction (cold-start users)."""
        return np.setdiff1d(self.users(part), self.train.user_ids(), assume_unique=True)

    def _part(self, part: str) -> Interactions:
        parts = self.parts()
        if part not in parts:
            raise ConfigError(f"unknown split part {part!r}; this split has {', '.join(parts)}")
        return parts[part]

    # --- leakage guards -------------------------------------------------------------------------------
    def leaked_rows(self, part: str = "test") -> int:
        """How many events of ``part`` also occur in train.

        An event is (user, item, time) when the data have times, else (user, item). With times this
        allows a repeat purchase of an item bought before, which is a genuinely new event.
        """
        return int(_event_keys_in(self._part(part), self.train).sum())

    def assert_no_leakage(self) -> None:
        """Raise ``DataError`` if a valid, test or context event also occurs in train."""
        for part in ("valid", "test", "context"):
            if part in self.parts():
                n = self.leaked_rows(part)
                if n:
                    raise DataError(
                        f"split {self.name!r} leaks: {n} {part} events also occur in train "
                        "(identical events in the data? prepare with --dedup first)"
                    )

    def summary(self) -> dict[str, dict[str, int]]:
        """Events, users and items per part."""
        return {
            part: {"interactions": len(inter), "users": len(inter.user_ids()), "items": len(inter.item_ids())}
            for part, inter in self.parts().items()
        }


@dataclass
class SplitMeta:
    """What ``meta.json`` and ``idmaps.json`` say of a split besides its rows."""

    name: str
    notes: dict[str, str]
    has_context: bool
    time_unit: str | None
    users: IdMap
    items: IdMap

    @classmethod
    def of(cls, split: Split) -> SplitMeta:
        return cls(split.name, split.notes, split.context is not None, split.train.time_unit, split.train.users,
                   split.train.items)


def _event_keys_in(part: Interactions, train: Interactions) -> np.ndarray:
    """Boolean mask over rows of ``part``: True where the same event occurs in ``train``."""
    if len(part) == 0 or len(train) == 0:
        return np.zeros(len(part), dtype=bool)
    use_time = part.time is not None and train.time is not None

    def keys(x: Interactions) -> np.ndarray:
        cols: list[np.ndarray] = [x.user, x.item]
        if use_time and x.time is not None:
            cols.append(x.time)
        return np.rec.fromarrays(cols)

    return np.isin(keys(part), keys(train))


def is_subset(events: Interactions, of: Interactions) -> bool:
    """Whether every event of ``events`` also occurs in ``of`` (same id maps; events keyed as in
    ``Split.leaked_rows``)."""
    return events.items == of.items and events.users == of.users and bool(_event_keys_in(events, of).all())


# --- split functions --------------------------------------------------------------------------------------
def leave_one_out(inter: Interactions, name: str = "loo") -> Split:
    """Per user, in time order: last event -> test, second-to-last -> valid, the rest -> train.

    Users with two events give one to train and one to test; users with one event are train only.
    """
    order = inter.chronological_order()
    counts = np.bincount(inter.user, minlength=inter.n_users)
    user_sorted = inter.user[order]
    # position of each (sorted) row counted from the end of its user's sequence: 0 = last
    ends = np.cumsum(counts)[user_sorted]
    from_end = ends - 1 - np.arange(len(order))
    n = counts[user_sorted]
    part = np.zeros(len(order), dtype=np.int8)
    part[(from_end == 0) & (n >= 2)] = 2
    part[(from_end == 1) & (n >= 3)] = 1
    s = inter.select(order)
    return Split(s.select(part == 0), s.select(part == 1), s.select(part == 2), name=name)


def temporal_split(inter: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1, name: str = "temporal") -> Split:
    """Global time cut: the latest ``test_frac`` of events -> test, the ``valid_frac`` before -> valid."""
    check_fracs(valid_frac, test_frac)
    if inter.time is None or inter.time_unit != "s":
        raise ConfigError(TEMPORAL_NEEDS_TIMES)
    # Cut times chosen so the latest round(test_frac * n) events are test (events tied with the cut
    # time go to the later part, so no event is ever "after" one that lands in an earlier part).
    times = np.sort(inter.time)
    n = len(times)
    n_test, n_valid = int(round(test_frac * n)), int(round(valid_frac * n))
    t_test = times[n - n_test] if n_test else np.inf
    t_valid = times[n - n_test - n_valid] if n_valid else t_test
    test = inter.time >= t_test
    valid = (inter.time >= t_valid) & ~test
    s = Split(inter.select(~(test | valid)), inter.select(valid), inter.select(test), name=name)
    s.notes["cut"] = temporal_cut_note(t_valid, t_test)
    return s


def random_split(
    inter: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0, name: str = "random"
) -> Split:
    """Each event goes to valid / test with the given probabilities, independently (seeded)."""
    check_fracs(valid_frac, test_frac)
    u = np.random.default_rng(seed).random(len(inter))
    test = u < test_frac
    valid = (u >= test_frac) & (u < test_frac + valid_frac)
    return Split(inter.select(~(test | valid)), inter.select(valid), inter.select(test), name=name)


def cold_start_items(
    inter: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0, name: str = "cold-items"
) -> Split:
    """Hold out a random share of the items with *all* their events: those go to valid / test.

    Test items therefore never occur in train; only text (or other side information) can rank them.
    """
    check_fracs(valid_frac, test_frac)
    present = inter.item_ids()
    perm = np.random.default_rng(seed).permutation(present)
    n_test = int(round(test_frac * len(present)))
    n_valid = int(round(valid_frac * len(present)))
    role = np.zeros(inter.n_items, dtype=np.int8)
    role[perm[:n_test]] = 2
    role[perm[n_test : n_test + n_valid]] = 1
    r = role[inter.item]
    return Split(inter.select(r == 0), inter.select(r == 1), inter.select(r == 2), name=name)


def cold_start_users(
    inter: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0, name: str = "cold-users"
) -> Split:
    """Hold out a random share of users (with >= 2 events) entirely from training.

    For a held-out user the last event is the target (valid or test) and the earlier ones are
    ``context``: input the model may read at inference time, never fit on.
    """
    check_fracs(valid_frac, test_frac)
    counts = np.bincount(inter.user, minlength=inter.n_users)
    eligible = np.flatnonzero(counts >= 2)
    perm = np.random.default_rng(seed).permutation(eligible)
    n_test = int(round(test_frac * len(eligible)))
    n_valid = int(round(valid_frac * len(eligible)))
    role = np.zeros(inter.n_users, dtype=np.int8)
    role[perm[:n_test]] = 2
    role[perm[n_test : n_test + n_valid]] = 1
    s = inter.sorted()
    r = role[s.user]
    is_last = np.ones(len(s), dtype=bool)
    is_last[:-1] = s.user[1:] != s.user[:-1]
    return Split(
        train=s.select(r == 0),
        valid=s.select((r == 1) & is_last),
        test=s.select((r == 2) & is_last),
        context=s.select((r > 0) & ~is_last),
        name=name,
    )


def temporal_cut_note(t_valid: float, t_test: float) -> str:
    """Where a temporal split cut (``inf``: no such part)."""
    at = lambda t: int(t) if np.isfinite(t) else None  # noqa: E731
    return f"valid from t={at(t_valid)}, test from t={at(t_test)}"


def leak_message(split: str, n: int, part: str) -> str:
    return (f"split {split!r} leaks: {n} {part} events also occur in train "
            "(identical events in the data? prepare with --dedup first)")


def check_fracs(valid_frac: float, test_frac: float) -> None:
    if not (0 <= valid_frac < 1 and 0 <= test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"split fractions must be in [0, 1) and sum below 1; got valid={valid_frac}, test={test_frac}"
        )
