"""CTR: metrics by hand, history construction without leakage, models that must learn a planted
like/dislike pattern, decoder-only backbones with LoRA, tuning strategies counted."""

import math

import numpy as np
import pytest

from lmrec.ctr import CrossEncoderCTR, FrozenEncoderMLP, IdFM, auc, ctr_examples, log_loss
from lmrec.data import IdMap, Interactions, ItemTable
from lmrec.data.split import Split
from lmrec.errors import ConfigError
from tests.text import tiny_models

COLORS = ["red", "blue", "green", "yellow"]
THINGS = ["cup", "hat", "shoe", "lamp", "kite", "bowl"]
WORDS = COLORS + THINGS + [";", "no", "history"]


def test_auc_and_log_loss_by_hand():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.3])
    # positive-negative pairs: (0.9>0.8) (0.9>0.3) (0.3<0.8) (0.3=0.3 -> half) = 2.5 / 4
    assert auc(labels, scores) == 0.625
    expected = -(math.log(0.9) + math.log(0.2) + math.log(0.3) + math.log(0.7)) / 4
    assert math.isclose(log_loss(labels, scores), expected, rel_tol=1e-9)
    with pytest.raises(ConfigError, match="both positive and negative"):
        auc(np.ones(3), np.arange(3))


def colour_ctr(n_users=48, per_user=12, seed=0):
    """Each user likes exactly one colour: a row is a like iff the candidate has the user's colour.
    Times increase; the first 60% of each user's rows are train, then 20% valid, 20% test."""
    rng = np.random.default_rng(seed)
    titles = [f"{c} {t}" for c in COLORS for t in THINGS]
    colour_of = np.repeat(np.arange(len(COLORS)), len(THINGS))
    users, items, labels, times, part = [], [], [], [], []
    for u in range(n_users):
        for j in range(per_user):
            i = int(rng.integers(len(titles)))
            users.append(u)
            items.append(i)
            labels.append(int(colour_of[i] == u % len(COLORS)))
            times.append(1000 * j + u)
            part.append(0 if j < 0.6 * per_user else 1 if j < 0.8 * per_user else 2)
    inter = Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(len(titles))),
                         time=np.array(times), label=np.array(labels))
    part = np.array(part)
    split = Split(inter.select(part == 0), inter.select(part == 1), inter.select(part == 2), name="colour")
    return split, ItemTable(inter.items, {"title": titles})


def test_histories_hold_only_earlier_likes():
    split, _ = colour_ctr()
    ex = ctr_examples(split, "test", max_history=50)
    all_rows = Interactions.concat(list(split.parts().values()))
    for r in range(0, len(ex), 7):
        u, t = ex.users[r], split.test.time[r]
        before = (all_rows.user == u) & (all_rows.time < t) & (all_rows.label == 1)
        order = np.argsort(all_rows.time[before])
        assert np.array_equal(ex.histories[r], all_rows.item[before][order])
    assert ex.n_users == 48 and set(np.unique(ex.labels)) == {0.0, 1.0}


def test_id_fm_learns_user_colour_preferences():
    split, items = colour_ctr(n_users=40, per_user=40)
    train, valid, test = (ctr_examples(split, p) for p in ("train", "valid", "test"))
    model = IdFM(epochs=60, batch_size=64, patience=10).fit(train, items, valid)
    assert model.evaluate(test)["auc"] >= 0.85


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_models.tiny_bert(tmp_path_factory.mktemp("bert"), WORDS, hidden=32, layers=2)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_models.tiny_llama(tmp_path_factory.mktemp("llama"), WORDS, hidden=32)


@pytest.mark.slow
def test_cross_encoder_learns_the_pattern_from_text(bert):
    # enough rows per user that histories hold several liked titles to compare the candidate with
    split, items = colour_ctr(n_users=40, per_user=30)
    train, test = ctr_examples(split, "train"), ctr_examples(split, "test")
    model = CrossEncoderCTR(encoder=str(bert), epochs=30, lr=1e-3, batch_size=32).fit(train, items)
    first, second = model.pair_texts(test, np.array([0]))
    assert second[0] == items["title"][test.items[0]] and (first[0] == "no history" or ";" in first[0] or " " in first[0])
    assert model.evaluate(test)["auc"] >= 0.85  # chance is 0.5; the ID-free pattern needs the text


def test_decoder_backbone_with_lora_trains_head_and_adapters_only(llama):
    split, items = colour_ctr()
    train, test = ctr_examples(split, "train"), ctr_examples(split, "test")
    model = CrossEncoderCTR(encoder=str(llama), tuning="lora", lora_rank=4, lora_targets=["q_proj", "v_proj"],
                            epochs=1, batch_size=32)
    model.fit(train, items)
    # LoRA A [4, 32] + B [32, 4] on q and v of 2 layers, plus the score head [1, 32] (no bias)
    assert model.trainable_params_ == 2 * 2 * (4 * 32 + 32 * 4) + 32
    p = model.predict(test)
    assert p.shape == (len(test),) and np.isfinite(p).all()


@pytest.mark.parametrize("tuning,expected", [("frozen", "head"), ("top-k", "head+last"), ("full", "all")])
def test_cross_encoder_tuning_counts(bert, tuning, expected):
    split, items = colour_ctr(n_users=8, per_user=5)
    model = CrossEncoderCTR(encoder=str(bert), tuning=tuning, top_k=1, epochs=1).fit(ctr_examples(split, "train"), items)
    m = model.net_.model
    head = sum(p.numel() for p in m.classifier.parameters())
    # top-k trains the last layer and what runs after the layer stack (BERT's pooler, which the head reads)
    last = sum(p.numel() for p in m.bert.encoder.layer[-1].parameters()) + sum(p.numel() for p in m.bert.pooler.parameters())
    counts = {"head": head, "head+last": head + last, "all": sum(p.numel() for p in m.parameters())}
    assert model.trainable_params_ == counts[expected]


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_cross_encoder_head_learns_at_its_own_rate(bert, tuning):
    from lmrec.ctr.models import _CrossEncoder
    from lmrec.train import Trainer

    model = CrossEncoderCTR(encoder=str(bert), tuning=tuning, lr=1e-5, head_lr=1e-3, epochs=1)
    net = _CrossEncoder(bert)
    net.tune(model.config)  # as fit() does before training (afterwards LoRA is merged away)
    head = {id(p) for n, p in net.named_parameters() if "classifier" in n and p.requires_grad}
    assert head
    lrs = {id(p): g["lr"] for g in Trainer(model.config)._optimizer(net).param_groups for p in g["params"]}
    assert len(lrs) == sum(p.requires_grad for p in net.parameters())
    assert all(lr == pytest.approx(1e-3 if key in head else 1e-5) for key, lr in lrs.items())


def test_frozen_encoder_mlp_runs_on_the_hashing_encoder():
    split, items = colour_ctr()
    train, test = ctr_examples(split, "train"), ctr_examples(split, "test")
    model = FrozenEncoderMLP(encoder="hash:128", epochs=40, lr=3e-3, batch_size=32, patience=40).fit(train, items)
    assert model.evaluate(test)["auc"] >= 0.8


def test_reranking_reorders_the_retrievers_top_k_by_the_ctr_model():
    from lmrec.ctr.rerank import Reranked
    from lmrec.data.queries import Queries
    from lmrec.eval import Evaluator
    from lmrec.registry import create

    split, items = colour_ctr(n_users=40, per_user=40)
    train, valid = ctr_examples(split, "train"), ctr_examples(split, "valid")
    fm = IdFM(epochs=60, batch_size=64, patience=10).fit(train, items, valid)
    pop = create("pop").fit(split.train)
    reranked = Reranked(pop, fm, k=12)
    q = Queries.from_interactions(split.train.select(split.train.label == 1), np.arange(40))
    base, scores = pop.score(q), reranked.score(q)
    for r in range(3):
        seen = q.history[r].indices
        masked = np.where(np.isin(np.arange(len(base[r])), seen), -np.inf, base[r])
        cut = np.sort(masked)[::-1][11]  # retriever ties at the cut may go either way
        new_order = np.argsort(-scores[r], kind="stable")
        new_order = new_order[~np.isin(new_order, seen)]
        assert (masked[new_order[:12]] >= cut).all()  # the retriever's top 12 come first ...
        assert np.all(np.diff(scores[r][new_order[:12]]) <= 0)  # ... in the reranker's order
        assert (scores[r][new_order[:12]] > scores[r][new_order[12:]].max()).all()
    test = Evaluator(split, "test", ks=(5,))
    assert test.evaluate(reranked).means()["ndcg@5"] > test.evaluate(pop).means()["ndcg@5"] + 0.05
    assert reranked.seconds_per_user > 0


class _FixedScores:
    """A stand-in retriever / reranker with fixed per-item scores (what the fusion test needs)."""

    name = "fixed"

    def __init__(self, per_item):
        self.per_item = np.asarray(per_item, dtype=np.float32)

    def score(self, queries):
        return np.tile(self.per_item, (len(queries), 1))

    def predict(self, examples):
        return self.per_item[examples.items]


def _fused_top(retriever_scores, reranker_probs, weight, k=4):
    import scipy.sparse as sp

    from lmrec.ctr.rerank import Reranked
    from lmrec.data.queries import Queries

    n = len(retriever_scores)
    q = Queries(np.array([0]), sp.csr_matrix(([1.0], ([0], [n - 1])), shape=(1, n)), [np.array([n - 1])])
    scores = Reranked(_FixedScores(retriever_scores), _FixedScores(reranker_probs), k=k, weight=weight).score(q)[0]
    order = [int(i) for i in np.argsort(-scores, kind="stable") if i != n - 1]
    return order[:k], scores


def test_fused_rank_by_hand():
    # item 5 is the user's history (never a candidate, although the retriever likes it most); the
    # retriever's top 4 are items 0, 1, 2, 3 (ranks 0..3); the reranker ranks them 2 (0), 3 (1), 1 (2), 0 (3)
    retriever = [0.9, 0.8, 0.7, 0.6, 0.1, 1.0]
    reranker = [0.1, 0.2, 0.9, 0.5, 0.0, 0.0]
    assert _fused_top(retriever, reranker, 0.0)[0] == [0, 1, 2, 3]
    assert _fused_top(retriever, reranker, 1.0)[0] == [2, 3, 1, 0]
    # w=0.5: fused 0 -> 1.5, 1 -> 2.0, 2 -> 1.0, 3 -> 2.0 (tie with 1, the retriever's order decides)
    assert _fused_top(retriever, reranker, 0.5)[0] == [2, 0, 1, 3]
    # w=0.2: 0 -> 0.6, 1 -> 1.2, 2 -> 1.6, 3 -> 2.6;  w=0.8: 0 -> 2.4, 1 -> 1.8, 2 -> 0.4, 3 -> 1.4
    assert _fused_top(retriever, reranker, 0.2)[0] == [0, 1, 2, 3]
    assert _fused_top(retriever, reranker, 0.8)[0] == [2, 3, 1, 0]
    top, scores = _fused_top(retriever, reranker, 0.5)
    assert scores[top].min() > max(scores[4], scores[5])  # candidates above the rest, history included
    with pytest.raises(ConfigError, match="between 0"):
        _fused_top(retriever, reranker, 1.5)


class _Inverted:
    """A reranker that gets every preference backwards."""

    name = "inverted"

    def __init__(self, model):
        self.model = model

    def predict(self, examples):
        return 1.0 - self.model.predict(examples)


def test_fusion_weight_is_chosen_on_validation():
    from lmrec.ctr.rerank import Reranked
    from lmrec.eval import Evaluator
    from lmrec.registry import create

    split, items = colour_ctr(n_users=40, per_user=40)
    fm = IdFM(epochs=60, batch_size=64, patience=10).fit(ctr_examples(split, "train"), items,
                                                         ctr_examples(split, "valid"))
    pop = create("pop").fit(split.train)
    valid, test = Evaluator(split, "valid", ks=(10,)), Evaluator(split, "test", ks=(10,))
    good = Reranked(pop, fm, k=12)
    choice = good.fit_weight(valid)
    curve = choice.curve
    assert set(curve) == {round(0.1 * i, 1) for i in range(11)}
    assert good.weight == choice.best >= 0.5 and curve[good.weight] == max(curve.values()) > curve[0.0] + 0.05
    assert choice.p_value is not None and choice.p_value < 0.05
    assert good.users_reranked == 0  # latency counters restart after the choice
    assert test.evaluate(good).means()["ndcg@10"] > test.evaluate(pop).means()["ndcg@10"] + 0.05
    # a reranker that is always wrong gets no weight: the pipeline keeps the retriever's order
    bad = Reranked(pop, _Inverted(fm), k=12)
    bad_choice = bad.fit_weight(valid)
    assert bad.weight == 0.0 and bad_choice.curve[1.0] < bad_choice.curve[0.0]
    assert np.allclose(test.evaluate(bad).per_user["ndcg@10"], test.evaluate(pop).per_user["ndcg@10"])
    # a gain too small to be significant is not trusted: with an impossible level, weight 0
    assert Reranked(pop, fm, k=12).fit_weight(valid, significance=1e-300).weight == 0.0


def write_colour_collm(folder, n_users=40, per_user=40):
    """The colour data in the CoLLM Parquet layout, so `lmrec bench` reads it as movielens-1m-collm."""
    import pandas as pd

    split, items = colour_ctr(n_users, per_user)
    folder.mkdir(parents=True)
    titles = items["title"]
    for part, file in (("train", "train_ood2"), ("valid", "valid_ood2"), ("test", "test_ood2")):
        x = getattr(split, part)
        pd.DataFrame({"uid": x.user + 1, "iid": x.item + 1, "label": x.label, "timestamp": x.time,
                      "title": [titles[i] for i in x.item], "his": [[0]] * len(x), "his_title": [[""]] * len(x)}
                     ).to_parquet(folder / f"{file}.parquet", index=False)


def test_cli_bench_reranks_every_model_and_reports_latency(tmp_path):
    import json

    from typer.testing import CliRunner

    from lmrec.cli import app

    write_colour_collm(tmp_path / "data" / "movielens-1m-collm")
    r = CliRunner().invoke(app, ["bench", "--dataset", "movielens-1m-collm", "--data-dir", str(tmp_path / "data"),
                                 "--models", "pop", "--ks", "5", "--rerank", "id-fm", "--rerank-k", "12",
                                 "--set", "id-fm.epochs=60", "--set", "id-fm.batch_size=64", "--set", "id-fm.patience=10",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())["models"]
    assert set(metrics) == {"pop", "pop+id-fm@12"}
    # the reranker knows each user's colour; popularity does not
    assert metrics["pop+id-fm@12"]["means"]["ndcg@5"] > metrics["pop"]["means"]["ndcg@5"] + 0.05
    assert metrics["pop+id-fm@12"]["rerank_ms_per_user"] > 0 and "rerank_ms_per_user" not in metrics["pop"]
    assert "rerank_ms/user" in (run / "leaderboard.md").read_text()
    # the fused-rank weight was chosen on validation and is recorded with its validation curve
    assert 0.0 <= metrics["pop+id-fm@12"]["rerank_weight"] <= 1.0
    assert len(metrics["pop+id-fm@12"]["rerank_valid_ndcg@10"]) == 11


def test_bench_rerank_needs_a_labelled_dataset(tmp_path):
    from lmrec.pipeline import Rerank, leaderboard
    from tests.data import fixtures

    fixtures.write_ml100k(tmp_path / "movielens-100k")
    with pytest.raises(ConfigError, match="no labels"):
        leaderboard("movielens-100k", ["pop"], rerank=Rerank("id-fm"), data_dir=tmp_path, runs_dir=tmp_path / "runs")
    with pytest.raises(ConfigError, match="unknown reranker 'gbdt'"):
        leaderboard("movielens-100k", ["pop"], rerank=Rerank("gbdt"), data_dir=tmp_path, runs_dir=tmp_path / "runs")
