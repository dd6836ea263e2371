"""Why was item I recommended to this user: the history items that moved its score, and the words of its text.

History items: where a model's score is a sum over the history, the terms are the attribution, exactly
(EASE and ItemKNN: one learned weight per history item; ``lmcontent``: the recency-weighted similarity of
each history item's vector to the power, or at power 1 over the norm of the user vector). Everywhere else
(sequence models, two-tower, MF, ...) it is **occlusion**: the item is scored again with each history item
removed (all its occurrences), in one batch, and the contribution is how much the score falls. Attention
weights are not used: they say where a network looked, not what changed its answer.

Words (models that read text): the item's text is encoded again with each word left out, and a word's weight
is how much the item's score falls without it; the same for the text of the history item that contributed
most (its words that matched the item).

``bench/explain.py`` measures whether this is faithful: removing the top-attributed history item must drop
the item's rank more than removing a random one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.text.texts import default_template

MAX_WORDS = 64  # words of an item's text weighed one by one (each costs one more encoding)


@dataclass
class Contribution:
    """A history item (index) and how much it added to the score (negative: it held the item back)."""

    item: int
    contribution: float


@dataclass
class WordWeight:
    word: str
    contribution: float


@dataclass
class Explanation:
    item: int
    score: float
    method: str  # "exact" or "occlusion"
    history: list[Contribution]  # every distinct history item, largest contribution first
    words: list[WordWeight] = field(default_factory=list)  # largest first; empty for models that read no text
    # the words of the most contributing history item's text that matched most (text models)
    history_words: list[WordWeight] = field(default_factory=list)
    seconds: float = 0.0


def without_each(history: np.ndarray, n_items: int, user: int) -> tuple[np.ndarray, Queries]:
    """``(distinct history items, Queries with one row per distinct item, the history without it)``."""
    history = np.asarray(history, dtype=np.int64)
    distinct = np.array(list(dict.fromkeys(history.tolist())), dtype=np.int64)
    rows = [history[history != j] for j in distinct]
    indptr = np.concatenate([[0], np.cumsum([len(np.unique(r)) for r in rows])])
    cols = np.concatenate([np.unique(r) for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    seen = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(rows), n_items))
    return distinct, Queries(np.full(len(rows), user), seen, rows)


def history_contributions(model: Any, history: np.ndarray, item: int, user: int) -> tuple[list[Contribution], str]:
    """Each distinct history item's contribution to ``item``'s score, and the method used."""
    n_items = int(model.n_items_)
    query = Queries.one(history, n_items, user)
    exact = model.history_terms(query, item)  # exact per-item terms, or None
    if exact is not None:
        distinct, terms = exact
        method = "exact"
    else:
        distinct, occluded = without_each(history, n_items, user)
        full = float(model.score(query)[0, item])
        terms = full - model.score(occluded)[:, item] if len(distinct) else np.zeros(0)
        method = "occlusion"
    order = np.argsort(-np.asarray(terms), kind="stable")
    return [Contribution(int(distinct[k]), float(terms[k])) for k in order], method


def _leave_one_out(model: Any, catalogue: ItemTable, of: int, score: Any, top: int) -> list[WordWeight]:
    """Words of item ``of``'s text by how much ``score(texts)`` falls when the text lacks each one."""
    template = getattr(model.config, "template", None) or default_template(catalogue)
    words = re.findall(r"\S+", catalogue.render(template, [of])[0])[:MAX_WORDS]
    if len(words) < 2:
        return []
    scores = score([" ".join(words), *(" ".join(words[:k] + words[k + 1:]) for k in range(len(words)))])
    weights = scores[0] - scores[1:]
    order = np.argsort(-weights, kind="stable")[:top]
    return [WordWeight(words[k], float(weights[k])) for k in order]


def word_weights(model: Any, catalogue: ItemTable, history: np.ndarray, item: int, user: int,
                 top: int = 8) -> list[WordWeight]:
    """The words of ``item``'s text that raise its score most (models that read text; [] for others)."""
    if not hasattr(model, "score_item_texts"):
        return []
    query = Queries.one(history, int(model.n_items_), user)
    return _leave_one_out(model, catalogue, item, lambda texts: model.score_item_texts(query, texts), top)


def history_word_weights(model: Any, catalogue: ItemTable, history: np.ndarray, item: int, user: int,
                         history_item: int, top: int = 8) -> list[WordWeight]:
    """The words of ``history_item``'s text that raise ``item``'s score most (models that read text)."""
    if not hasattr(model, "score_with_history_texts"):
        return []
    query = Queries.one(history, int(model.n_items_), user)
    return _leave_one_out(model, catalogue, history_item,
                          lambda texts: model.score_with_history_texts(query, history_item, texts, item), top)


def explain(model: Any, history: np.ndarray, item: int, user: int | None = None,
            catalogue: ItemTable | None = None, words: bool = True) -> Explanation:
    """Why ``model`` scores ``item`` as it does for a user with ``history`` (``user``: their index when the
    model knows them, else a new user)."""
    n_items = int(model.n_items_)
    if not 0 <= item < n_items:
        raise ConfigError(f"item index {item} is outside the catalogue of {n_items} items")
    started = time.perf_counter()
    user = int(model.n_users_ or 0) if user is None else user
    score = float(model.score(Queries.one(history, n_items, user))[0, item])
    contributions, method = history_contributions(model, history, item, user)
    weights, matched = [], []
    if words and catalogue is not None:
        weights = word_weights(model, catalogue, history, item, user)
        if contributions:
            matched = history_word_weights(model, catalogue, history, item, user, contributions[0].item)
    return Explanation(item, score, method, contributions, weights, matched, time.perf_counter() - started)
