"""Membership inference: can someone holding a trained recommender tell the users it was trained on from
users it never saw? If yes, the model leaks who was in its training data (and, with it, their history).

The signal is the model's next-item loss on a user's sequence: each of the last ``positions`` items is
predicted from the items before it, with the model's scores over the whole catalogue as a softmax. A model
that memorised its training users predicts their items much better than anyone else's.

* ``membership_attack``: the loss-threshold attack. Its AUC over members (low loss = member) and
  non-members is the chance that a random member looks more like a member than a random non-member;
  0.5 means the model gives nothing away, 1.0 that membership is plain.
* ``shadow_attack``: the attacker trains a shadow model of the same kind on data of their own (users
  disjoint from the target's), learns from it what members look like (a logistic regression on the loss
  and the sequence length), and applies that to the target model: AUC and the accuracy of its yes / no
  decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lmrec.data.interactions import Interactions
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError

SCORE_BATCH = 512  # prefixes scored per call


@dataclass
class AttackResult:
    auc: float  # of the attack's member score over members vs non-members
    accuracy: float | None  # of its yes / no decisions (shadow attack: threshold learned on the shadow model)
    members: int
    non_members: int


def sequence_losses(model: Any, sequences: Sequence[np.ndarray], n_items: int, positions: int = 10,
                    users: np.ndarray | None = None) -> np.ndarray:
    """Per sequence: the mean cross-entropy of its last ``positions`` items, each predicted from the items
    before it (``users``: the row each sequence is to the model; default: none the model knows)."""
    if positions < 1:
        raise ConfigError(f"positions must be at least 1, got {positions}")
    unknown = int(getattr(model, "n_users_", 0) or 0)  # an index past the trained users: a new user
    rows, prefixes, targets = [], [], []
    for r, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        for t in range(max(1, len(seq) - positions), len(seq)):
            rows.append(r)
            prefixes.append(seq[:t])
            targets.append(seq[t])
    if not rows:
        raise ConfigError("no sequence has two or more items: nothing to predict")
    who = np.full(len(sequences), unknown, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    losses = np.empty(len(rows))
    for start in range(0, len(rows), SCORE_BATCH):
        part = range(start, min(start + SCORE_BATCH, len(rows)))
        seqs = [prefixes[i] for i in part]
        indptr = np.cumsum([0] + [len(s) for s in seqs])
        history = sp.csr_matrix((np.ones(indptr[-1], dtype=np.float32), np.concatenate(seqs), indptr),
                                shape=(len(seqs), n_items))
        history.sum_duplicates()
        history.data[:] = 1.0
        scores = np.asarray(model.score(Queries(who[[rows[i] for i in part]], history, seqs)), dtype=np.float64)
        top = scores.max(1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(scores - top).sum(1))
        losses[start:start + len(seqs)] = log_norm - scores[np.arange(len(seqs)), [targets[i] for i in part]]
    return np.bincount(rows, weights=losses, minlength=len(sequences)) / np.maximum(
        np.bincount(rows, minlength=len(sequences)), 1)


def membership_attack(member_losses: np.ndarray, non_member_losses: np.ndarray) -> AttackResult:
    """The loss-threshold attack: a lower loss says member."""
    labels = np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))]
    auc = float(roc_auc_score(labels, -np.r_[member_losses, non_member_losses]))
    return AttackResult(auc, None, len(member_losses), len(non_member_losses))


def shadow_attack(fit_shadow: Callable[[Interactions], Any], pool: Interactions, target: Any,
                  members: Sequence[np.ndarray], non_members: Sequence[np.ndarray], positions: int = 10,
                  seed: int = 0) -> AttackResult:
    """Train a shadow model (``fit_shadow(interactions) -> fitted model``) on half of ``pool``'s users (the
    attacker's own data), learn from its losses on those users and on the other half what a member looks
    like, and judge the target model's ``members`` and ``non_members`` sequences with it."""
    users = np.flatnonzero(np.bincount(pool.user, minlength=pool.n_users) >= 2)
    if len(users) < 4:
        raise ConfigError("the shadow attack needs at least 4 users with two or more events in its pool")
    inside = np.random.default_rng(seed).permutation(users)[: len(users) // 2]
    is_in = np.isin(pool.user, inside)
    shadow = fit_shadow(pool.select(is_in))
    seqs = pool.sequences()
    shadow_seqs = [seqs[int(u)] for u in users]
    labels = np.isin(users, inside).astype(int)
    features = _features(sequence_losses(shadow, shadow_seqs, pool.n_items, positions), shadow_seqs)
    attack = LogisticRegression().fit(features, labels)
    n_items = int(getattr(target, "n_items_", pool.n_items))
    target_seqs = list(members) + list(non_members)
    target_features = _features(sequence_losses(target, target_seqs, n_items, positions), target_seqs)
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    said = attack.predict(target_features)
    return AttackResult(float(roc_auc_score(truth, attack.decision_function(target_features))),
                        float((said == truth).mean()), len(members), len(non_members))


def _features(losses: np.ndarray, sequences: Sequence[np.ndarray]) -> np.ndarray:
    """What the attack reads per user: the loss, and the sequence length (longer ones are easier to fit)."""
    return np.c_[losses, np.log1p([len(s) for s in sequences])]
