"""SASRec and TextSeqRec: planted sequential patterns, inductive scoring of unseen items, freezing,
the empty-history policy, early stopping through the Evaluator."""

import math

import numpy as np
import pytest
import torch

from lmrec.data import IdMap, Interactions, ItemTable, leave_one_out
from lmrec.data.batching import SequenceBatch
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator
from lmrec.registry import create, load_model

N_ITEMS = 20
SMALL = dict(dim=16, heads=2, layers=1, max_len=5, batch_size=16, lr=1e-2, dropout=0.1)


def successor_data(n_users=80, length=8, n_items=N_ITEMS, seed=0):
    """Each user walks i, i+1, i+2, ... (mod n): the next item is always the successor of the last."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        start = rng.integers(n_items)
        users += [u] * length
        items += ((start + np.arange(length)) % n_items).tolist()
        times += list(range(length))
    return Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(n_items)),
                        time=np.array(times))


def top1_is_successor(model, last_items, n_items=N_ITEMS):
    """Queries ``j-2, j-1, j`` for each ``j`` of ``last_items``; whether the best item is ``j+1``."""
    last = np.asarray(last_items)
    seqs = (last[:, None] + np.arange(-2, 1)) % n_items
    q = Queries.from_interactions(
        Interactions(np.repeat(np.arange(len(last)), 3), seqs.ravel(), IdMap(range(len(last))), IdMap(range(n_items)),
                     time=np.tile(np.arange(3), len(last))))
    return model.score(q).argmax(1) == (last + 1) % n_items


@pytest.mark.parametrize("name,params", [("sasrec", {}), ("sasrec", {"loss": "sampled_softmax", "negatives": 8}),
                                         ("sasrec", {"loss": "bce", "negatives": 8, "epochs": 40}), ("textseq", {"encoder": "hash", "id_mode": "add"}),
                                         ("gru4rec", {}), ("bert4rec", {"epochs": 60})],
                         ids=["sasrec-ce", "sasrec-sampled", "sasrec-bce", "textseq-ids", "gru4rec", "bert4rec"])
def test_learns_the_successor_pattern(name, params):
    inter = successor_data()
    items = ItemTable(inter.items, {"title": [f"part {i}" for i in range(N_ITEMS)]})
    model = create(name, **{**SMALL, "epochs": 30, **params}).fit(inter, items)
    assert top1_is_successor(model, np.arange(N_ITEMS)).mean() >= 0.9


def test_textseq_scores_items_never_seen_in_training_through_their_text():
    """Two genres; users stay within one genre. Items 16-19 never occur in training: text alone must place
    them with their genre."""
    rng = np.random.default_rng(1)
    genre = np.arange(N_ITEMS) % 2
    users, items, times = [], [], []
    for u in range(100):
        pool = np.flatnonzero((genre == u % 2) & (np.arange(N_ITEMS) < 16))
        seq = rng.choice(pool, 6, replace=False)
        users += [u] * 6
        items += seq.tolist()
        times += list(range(6))
    inter = Interactions(np.array(users), np.array(items), IdMap(range(100)), IdMap(range(N_ITEMS)), time=np.array(times))
    words = ["jazz", "metal"]
    table = ItemTable(inter.items, {"title": [f"{words[g]} album {words[g]} record no{i}" for i, g in enumerate(genre)]})
    model = create("textseq", **SMALL, epochs=15, encoder="hash").fit(inter, table)
    cold = np.arange(16, N_ITEMS)
    scores = model.score(Queries.from_interactions(inter))[:, cold]
    own = genre[cold][None, :] == (np.arange(100) % 2)[:, None]  # [users, cold items]
    # every user ranks both unseen items of their genre above both unseen items of the other genre
    worst_own = np.where(own, scores, np.inf).min(1)
    best_other = np.where(~own, scores, -np.inf).max(1)
    assert (worst_own > best_other).mean() >= 0.9


def test_freezing_trains_only_the_unfrozen_parts():
    inter = successor_data(n_users=20)
    items = ItemTable(inter.items, {"title": [f"part {i}" for i in range(N_ITEMS)]})
    torch.manual_seed(0)
    model = create("textseq", **SMALL, epochs=2, encoder="hash", id_mode="add", freeze=["encoder", "ids"])
    model.fit(inter, items)
    net = model.net_
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in net.adaptor.parameters())
    # the frozen parts still hold their initial values (same seed, same construction order)
    torch.manual_seed(0)
    fresh = model._new_net(N_ITEMS, model.inputs_, model.popularity_ > 0)
    for name, p in net.encoder.state_dict().items():
        torch.testing.assert_close(p.cpu(), fresh.encoder.state_dict()[name], rtol=0, atol=0)
    assert not torch.equal(net.adaptor.weight.cpu(), fresh.adaptor.weight)
    with pytest.raises(ConfigError, match="needs id_mode='add'"):
        create("textseq", encoder="hash", freeze=["ids"], epochs=1).fit(inter, items)


def test_empty_history_falls_back_to_popularity():
    inter = successor_data(n_users=30)
    model = create("sasrec", **SMALL, epochs=1).fit(inter)
    empty = Queries.from_interactions(Interactions(np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                                                   IdMap(range(2)), IdMap(range(N_ITEMS))))
    np.testing.assert_array_equal(model.score(empty), np.tile(np.bincount(inter.item, minlength=N_ITEMS), (2, 1)))


def test_early_stopping_on_the_validation_part_and_save_load(tmp_path):
    split = leave_one_out(successor_data())
    model = create("sasrec", **{**SMALL, "lr": 3e-2}, epochs=40, patience=5)
    model.fit(split.train, validation=Evaluator(split, "valid", ks=(10,)))
    r = model.train_result_
    assert r.best_metric > 0.8 and r.best_epoch <= r.epochs_run <= 40
    assert Evaluator(split, "test", ks=(10,)).evaluate(model).means()["ndcg@10"] > 0.8
    model.save(tmp_path / "m")
    q = Queries.from_interactions(split.train)
    loaded = load_model(tmp_path / "m").to("auto")  # loads on the CPU; score on the same device
    np.testing.assert_array_equal(loaded.score(q), model.score(q))


def test_config_typo_names_the_closest_key():
    with pytest.raises(ConfigError, match="unknown key 'max_lenght' \\(did you mean 'max_len'"):
        create("sasrec", max_lenght=10)


def test_lm_prior_adds_the_scaled_text_match_of_the_recency_pooled_history():
    """Worked out by hand: half-life 1 weighs the last item 1, the one before 0.5, then 0.25; padding 0."""
    from lmrec.data.batching import query_batch
    from lmrec.models.textseq import TextSeqNet, TextSeqRecConfig

    lm = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2, 0]], dtype=np.float32)  # item 3 not unit length
    c = TextSeqRecConfig(dim=8, heads=2, layers=1, max_len=4, dropout=0, adaptor_dropout=0, lm_prior=True)
    net = TextSeqNet(lm, np.ones(4, dtype=bool), c).eval()
    with torch.no_grad():
        net.prior.raw_scale.fill_(math.log(2.0) / net.prior.GAIN)
    batch = query_batch([np.array([0, 1, 2]), np.array([2])], max_len=4)  # second row left-padded
    with torch.no_grad():
        states, table = net.sequence_states(batch), net.item_table()
        model_part = (torch.nn.functional.normalize(states[..., :8], dim=-1) / c.temperature
                      @ torch.nn.functional.normalize(table[:, :8], dim=-1).T)
        prior = net.similarity(states.reshape(-1, states.shape[-1]), table).view(2, 3, 4) - model_part
    unit = lm / np.linalg.norm(lm, axis=1, keepdims=True)
    last = np.array([0.25, 0.5, 1.0]) / np.sqrt(1.3125)  # after items 0, 1, 2
    middle = np.array([0.5, 1.0, 0.0]) / np.sqrt(1.25)  # after items 0, 1 (causal: item 2 not yet seen)
    np.testing.assert_allclose(prior[0, 2].numpy(), 2.0 * unit @ last, atol=1e-5)
    np.testing.assert_allclose(prior[0, 1].numpy(), 2.0 * unit @ middle, atol=1e-5)
    np.testing.assert_allclose(prior[1, 2].numpy(), 2.0 * unit @ np.array([0, 0, 1.0]), atol=1e-5)
    np.testing.assert_allclose(prior[1, :2].numpy(), 0.0, atol=1e-6)  # padding positions pool nothing
    # the pairwise form agrees with the all-items form
    flat = states[0, 2:3].expand(4, -1)
    torch.testing.assert_close(net.pair_similarity(flat, table), net.similarity(states[0, 2:3], table)[0])


@pytest.mark.parametrize("pattern", ["same-kind", "next-kind"])
def test_lm_prior_weight_follows_whether_text_similarity_predicts_the_next_item(pattern):
    """Items of four kinds, titled by kind. When users stay within a kind the text match is right and
    its weight must grow; when they always move to the next kind it misleads and its weight must shrink."""
    kinds, per_kind, n_users, length = 4, 5, 120, 6
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(n_users):
        k = rng.integers(kinds)
        for t in range(length):
            kind = k if pattern == "same-kind" else (k + t) % kinds
            users.append(u)
            items.append(kind * per_kind + rng.integers(per_kind))
            times.append(t)
    n_items = kinds * per_kind
    inter = Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(n_items)),
                         time=np.array(times))
    words = ["violin", "hammer", "tulip", "kettle"]
    table = ItemTable(inter.items, {"title": [f"{words[i // per_kind]} no{i}" for i in range(n_items)]})
    model = create("textseq", **{**SMALL, "dropout": 0.0}, epochs=10, encoder="hash", lm_prior=True, mask_history=True)
    model.fit(inter, table)
    scale, start = model.net_.prior.scale.item(), 1 / model.config.temperature
    assert (scale > start * 1.05) if pattern == "same-kind" else (scale < start * 0.95), scale


def test_a_finished_model_keeps_its_item_table_between_scores():
    inter = successor_data()
    items = ItemTable(inter.items, {"title": [f"thing {i}" for i in range(N_ITEMS)]})
    model = create("textseq", **SMALL, epochs=2, encoder="hash").fit(inter, items)
    q = Queries.from_interactions(inter)
    calls = []
    table = model.net_.item_table
    model.net_.item_table = lambda *a: calls.append(1) or table(*a)
    first = model.score(q)
    np.testing.assert_array_equal(model.score(q), first)
    assert calls == [1]  # computed once, at the first score after fit
    model.to("cpu")
    model.score(q)
    assert calls == [1, 1]  # moving the network drops the kept table


def test_bert4rec_refuses_the_left_to_right_history_mask():
    with pytest.raises(ConfigError, match="mask_history assumes a left-to-right model"):
        create("bert4rec", mask_history=True)


def test_bert4rec_reads_the_history_in_both_directions():
    """A query's state depends on every history item, and only a bidirectional encoder lets the first item's
    state see the last: changing the last item changes the first position's state."""
    model = create("bert4rec", **SMALL, epochs=1).fit(successor_data(n_users=20))
    net = model.net_
    q1 = torch.tensor([[1, 2, 3, 4]])
    q2 = torch.tensor([[1, 2, 3, 9]])

    def states(tokens):
        with torch.no_grad():
            return net.sequence_states(SequenceBatch(tokens, torch.full_like(tokens, -1), torch.zeros(1, dtype=torch.long)))

    assert not torch.allclose(states(q1)[0, 0], states(q2)[0, 0])
