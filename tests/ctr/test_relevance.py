"""Relevance reranker: training lists worked out by hand (no held-out event reaches the retriever), a
planted pattern it must learn on unlabelled data, size checks, and the `lmrec bench --rerank` path."""

import numpy as np
import pytest

from lmrec.ctr import RelevanceMLP, Reranked, candidate_lists
from lmrec.data import IdMap, Interactions, ItemTable
from lmrec.data.split import Split
from lmrec.errors import ConfigError
from lmrec.registry import create
from tests.ctr.test_ctr import COLORS, THINGS, write_colour_collm


def test_candidate_lists_by_hand():
    # u0: 0, 1, 2   u1: 0, 3   u2: 4   (in time order); holdout 1 holds out u0's 2 and u1's 3 (u2's only
    # event has no history). Popularity fitted on the rest counts item 0 twice, 1 and 4 once, 2 and 3 never.
    inter = Interactions(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 2, 0, 3, 4]), IdMap(range(3)), IdMap(range(5)),
                         time=np.array([1, 2, 3, 1, 2, 1]))
    fitted_on = []

    def make_pop():
        pop = create("pop")
        fit = pop.fit
        pop.fit = lambda train, items=None: (fitted_on.append(train), fit(train, items))[1]
        return pop

    lists, counts, stats = candidate_lists(make_pop, inter, None, k=3, holdout=1)
    assert sorted(zip(fitted_on[0].user, fitted_on[0].item)) == [(0, 0), (0, 1), (1, 0), (2, 4)]
    assert counts.tolist() == [2, 1, 0, 0, 1]
    # u0 (history 0, 1): candidates 4 (count 1), then 2 and 3 (count 0, smaller index first): 2 is the answer.
    # u1 (history 0): candidates 1, 4, 2: its answer 3 is not among them, so that list is dropped.
    assert (stats.held_out, stats.lists, stats.k, stats.hit_rate) == (2, 1, 3, 0.5)
    ex = lists.examples
    assert lists.n_lists == 1 and ex.users.tolist() == [0, 0, 0]
    assert ex.items.tolist() == [4, 2, 3] and ex.labels.tolist() == [0, 1, 0] and ex.ranks.tolist() == [0, 1, 2]
    assert all(h.tolist() == [0, 1] for h in ex.histories)
    with pytest.raises(ConfigError, match="holdout"):
        candidate_lists(make_pop, inter, None, k=3, holdout=0)


def colour_sequences(n_users=60, seed=0):
    """Each user consumes the 6 items of one colour in random order (unlabelled); the 5th is valid, the 6th
    test. Popularity cannot tell colours apart; the item text can."""
    rng = np.random.default_rng(seed)
    titles = [f"{c} {t}" for c in COLORS for t in THINGS]
    users, items, times, part = [], [], [], []
    for u in range(n_users):
        colour = u % len(COLORS)
        for j, i in enumerate(colour * len(THINGS) + rng.permutation(len(THINGS))):
            users.append(u)
            items.append(int(i))
            times.append(j)
            part.append(0 if j < 4 else 1 if j == 4 else 2)
    inter = Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(len(titles))),
                         time=np.array(times))
    part = np.array(part)
    return Split(inter.select(part == 0), inter.select(part == 1), inter.select(part == 2), name="colours"), \
        ItemTable(inter.items, {"title": titles})


def test_relevance_reranker_learns_which_candidate_comes_next():
    from lmrec.eval import Evaluator

    split, items = colour_sequences()
    pop = create("pop").fit(split.train)
    reranker = RelevanceMLP(encoder="hash:128", epochs=60, lr=3e-3, batch_size=16, patience=60).fit(
        pop, split.train, items, k=12)
    assert reranker.list_stats_.lists > 20 and reranker.trainable_params_ > 0
    test = Evaluator(split, "test", ks=(5,))
    base = test.evaluate(pop).means()["ndcg@5"]
    reranked = test.evaluate(Reranked(pop, reranker, k=12)).means()["ndcg@5"]
    assert reranked > base + 0.2, (base, reranked)
    with pytest.raises(ConfigError, match="top 12"):
        Reranked(pop, reranker, k=13)


def test_relevance_reranker_needs_candidate_ranks_and_a_fit():
    from lmrec.ctr import CTRExamples

    ex = CTRExamples(np.array([0]), np.array([1]), np.array([0.0], dtype=np.float32), [np.array([2])], 1)
    with pytest.raises(ConfigError, match="not fitted"):
        RelevanceMLP().predict(ex)
    split, items = colour_sequences(n_users=12)
    model = RelevanceMLP(encoder="hash:32", epochs=1).fit(create("pop").fit(split.train), split.train, items, k=12)
    with pytest.raises(ConfigError, match="needs their ranks"):
        model.predict(ex)
    with pytest.raises(ConfigError, match="did you mean .holdout."):
        RelevanceMLP(holdouts=2)


def test_bench_reranks_with_relevance_on_candidates(tmp_path):
    import json

    from lmrec.pipeline import Rerank, leaderboard

    write_colour_collm(tmp_path / "data" / "movielens-1m-collm")
    run = leaderboard("movielens-1m-collm", ["pop"], ks=(5,), data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                      params={"relevance-mlp": {"encoder": "hash:128", "epochs": 40, "lr": 3e-3, "patience": 40}},
                      rerank=Rerank("relevance-mlp", k=12))
    metrics = json.loads((run.run_dir / "metrics.json").read_text())["models"]
    two_stage = metrics["pop+relevance-mlp@12"]
    assert two_stage["rerank_train_lists"] > 20 and 0 < two_stage["rerank_list_hit_rate"] <= 1
    assert two_stage["means"]["ndcg@5"] > metrics["pop"]["means"]["ndcg@5"] + 0.05
    with pytest.raises(ConfigError, match="candidate lists"):
        leaderboard("movielens-1m-collm", ["pop"], data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                    rerank=Rerank("relevance-mlp", train_rows=100))
