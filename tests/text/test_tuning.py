"""Fine-tuning the language model: tuning strategies freeze exactly what they claim, LoRA adapters
save / load / merge to identical outputs, and a two-tower model learns a planted text pattern."""

import numpy as np
import pytest
import torch

from lmrec.data import IdMap, Interactions, ItemTable, leave_one_out
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator
from lmrec.registry import create, load_model
from lmrec.text import HFEncoder
from lmrec.text.backbone import transformer_layers
from lmrec.text.tuning import TunableEncoder
from tests.text import tiny_models

COLORS = ["red", "blue", "green", "yellow"]
THINGS = ["cup", "hat", "shoe", "lamp", "kite", "bowl"]
WORDS = COLORS + THINGS + [";", "no", "history", "unknown", "item"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return tiny_models.tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS, hidden=32, layers=3)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny_models.tiny_llama(tmp_path_factory.mktemp("tiny-llama"), WORDS)


def _params(module, pred=lambda n: True):
    return sum(p.numel() for n, p in module.named_parameters() if pred(n))


def test_tuning_strategies_freeze_exactly_what_they_claim(tiny_bert):
    total = _params(TunableEncoder(tiny_bert).model)
    full = TunableEncoder(tiny_bert)
    full.apply_tuning("full")
    assert full.trainable_params() == total
    frozen = TunableEncoder(tiny_bert)
    frozen.apply_tuning("frozen")
    assert frozen.trainable_params() == 0
    top = TunableEncoder(tiny_bert)
    top.apply_tuning("top-k", top_k=1)
    expected = _params(top.model, lambda n: n.startswith("encoder.layer.2.") or n.startswith("pooler."))
    assert len(transformer_layers(top.model)) == 3 and top.trainable_params() == expected
    lora = TunableEncoder(tiny_bert)
    lora.apply_tuning("lora", lora_rank=4, lora_targets=["query", "value"])
    # A [r, 32] and B [32, r] for query and value of each of 3 layers
    assert lora.trainable_params() == 3 * 2 * (4 * 32 + 32 * 4)
    with pytest.raises(ConfigError, match="top_k must be between 1 and the model's 3 layers"):
        TunableEncoder(tiny_bert).apply_tuning("top-k", top_k=4)


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_lora_save_load_merge_give_identical_outputs(which, tiny_bert, tiny_llama, tmp_path):
    folder = tiny_bert if which == "bert" else tiny_llama
    texts = ["red cup ; blue hat", "green lamp", "yellow kite ; red bowl ; blue shoe"]
    enc = TunableEncoder(folder)
    enc.apply_tuning("lora", lora_rank=4, lora_targets=["query", "value"] if which == "bert" else ["q_proj", "v_proj"])
    torch.manual_seed(1)
    for name, p in enc.named_parameters():
        if "lora_B" in name:
            p.data.normal_(std=0.3)  # as if trained (B starts at zero)
    adapted = enc.encode(texts)
    assert not np.allclose(adapted, TunableEncoder(folder).encode(texts), atol=1e-3)  # the adapter matters
    enc.save_adapter(tmp_path / "adapter")
    reloaded = TunableEncoder(folder)
    reloaded.load_adapter(tmp_path / "adapter")
    np.testing.assert_allclose(reloaded.encode(texts), adapted, atol=1e-5)
    reloaded.merge()
    assert not reloaded.has_adapter
    np.testing.assert_allclose(reloaded.encode(texts), adapted, atol=1e-5)
    # the exported merged model is an ordinary encoder with a fingerprint of its own
    exported = enc.export(tmp_path / "merged")
    hf = HFEncoder(exported, device="cpu")
    np.testing.assert_allclose(hf.encode(texts), adapted, atol=1e-5)
    assert hf.fingerprint != HFEncoder(folder, device="cpu").fingerprint


def color_data(n_users=60, length=5, seed=0):
    """Items are '<color> <thing>'; every user sticks to one colour, so the next item's colour is the
    history's colour. Only text can tell: item IDs carry nothing the model is given."""
    rng = np.random.default_rng(seed)
    titles = [f"{c} {t}" for c in COLORS for t in THINGS]
    users, items, times = [], [], []
    for u in range(n_users):
        color = u % len(COLORS)
        seq = color * len(THINGS) + rng.permutation(len(THINGS))[:length]
        users += [u] * length
        items += seq.tolist()
        times += list(range(length))
    inter = Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(len(titles))),
                         time=np.array(times))
    return inter, ItemTable(inter.items, {"title": titles})


@pytest.mark.slow
def test_two_tower_learns_a_planted_text_pattern(tiny_bert, tmp_path):
    inter, items = color_data()
    split = leave_one_out(inter)
    test = Evaluator(split, "test", ks=(5,))
    params = dict(encoder=str(tiny_bert), batch_size=16, epochs=12, lr=3e-3, samples_per_user=2, patience=12)
    frozen = create("twotower", **{**params, "tuning": "frozen"}).fit(split.train, items)
    tuned = create("twotower", **{**params, "tuning": "full"}).fit(split.train, items)
    # the 2 unseen items of the user's colour among 21 candidates: chance recall@5 is ~0.24
    assert tuned.trainable_params_ > 0 and frozen.trainable_params_ == 0
    tuned_recall = test.evaluate(tuned).means()["recall@5"]
    assert tuned_recall >= 0.9 and test.evaluate(frozen).means()["recall@5"] <= tuned_recall - 0.2
    loaded = load_model(tuned.save(tmp_path / "m"))
    q = test.queries
    np.testing.assert_allclose(loaded.score(q), tuned.score(q), atol=1e-5)
    # a free-text query goes through the same query tower: the rendered history text scores identically
    from lmrec.models.two_tower import query_text

    text = query_text(np.asarray(q.sequences[0]), tuned.query_titles_, tuned.config.query_items)
    np.testing.assert_allclose(tuned.score_texts([text])[0], tuned.score(q)[0], atol=1e-5)
    # the exported tower (from the reloaded artifact) is an ordinary encoder giving the model's item vectors
    folder = loaded.export_encoder(tmp_path / "encoder")
    exported = HFEncoder(folder, max_length=tuned.config.item_max_length)
    np.testing.assert_allclose(exported.encode(list(tuned.item_texts_)), tuned.item_vectors_, atol=1e-5)
    assert exported.fingerprint != HFEncoder(tiny_bert, max_length=tuned.config.item_max_length).fingerprint
    with pytest.raises(ConfigError, match="not empty"):
        loaded.export_encoder(folder)


def test_in_batch_loss_with_logq_correction_by_hand():
    from types import SimpleNamespace

    from lmrec.models.two_tower import PairBatch
    from lmrec.nn.losses import InBatchInfoNCE

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    i = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # targets (items 4, 7), then a hard negative (item 7)
    net = SimpleNamespace(query_tower=lambda ids, mask: q, item_tower=lambda ids, mask: i,
                          log_scale=torch.tensor(np.log(2.0)))
    batch = PairBatch(*(torch.zeros(1),) * 4, items=torch.tensor([4, 7, 7]), n_targets=2)
    log_q = torch.zeros(9)
    log_q[4], log_q[7] = np.log(0.5), np.log(0.1)
    loss = InBatchInfoNCE(log_q)(net, batch)
    # row 0: columns (items 4, 7, 7) logits 2*(1, .6, 0) - log q; row 1: 2*(0, .8, 1) - log q, and its
    # third column holds its own target item 7 again, so it is masked out
    row0 = torch.tensor([2.0, 1.2, 0.0]) - torch.log(torch.tensor([0.5, 0.1, 0.1]))
    row1 = torch.tensor([0.0, 1.6]) - torch.log(torch.tensor([0.5, 0.1]))
    expected = (-(row0.log_softmax(0)[0]) - row1.log_softmax(0)[1]) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    plain = InBatchInfoNCE()(net, batch)
    assert plain.item() == pytest.approx(((-torch.tensor([2.0, 1.2, 0.0]).log_softmax(0)[0])
                                          - torch.tensor([0.0, 1.6]).log_softmax(0)[1]).item() / 2, abs=1e-6)


def test_export_encoder_command(tiny_bert, tmp_path, capsys):
    from lmrec.cli import main

    inter, items = color_data()
    model = create("twotower", encoder=str(tiny_bert), tuning="frozen").fit(inter, items)
    saved = model.save(tmp_path / "twotower")
    assert main(["export-encoder", str(saved), str(tmp_path / "query"), "--side", "query"]) == 0
    assert "query encoder of" in capsys.readouterr().out
    query = HFEncoder(tmp_path / "query", max_length=model.config.query_max_length)
    np.testing.assert_allclose(query.encode(["red thing; blue thing"]), model.net_.query_tower.encode(
        ["red thing; blue thing"], max_length=model.config.query_max_length), atol=1e-5)
    pop = create("pop").fit(inter).save(tmp_path / "pop")
    assert main(["export-encoder", str(pop), str(tmp_path / "x")]) == 2
    assert "holds a 'pop' model" in capsys.readouterr().err
    assert main(["export-encoder", str(tmp_path / "nothing"), str(tmp_path / "y")]) == 2
    assert "is not a saved model" in capsys.readouterr().err


def test_hard_negatives_come_from_the_neighbours_and_never_from_the_users_items():
    from types import SimpleNamespace

    from lmrec.models.two_tower import PairSource, TwoTowerConfig

    # user u holds items 4u .. 4u+3 (so a target names its user); every item's neighbours are the next 6
    # items, wrapping, so two or three of a target's neighbours are the user's own items
    n_users, n_items = 8, 32
    inter = Interactions(np.repeat(np.arange(n_users), 4), np.arange(n_items), IdMap(range(n_users)),
                         IdMap(range(n_items)), time=np.tile(np.arange(4), n_users))
    neighbours = (np.arange(n_items)[:, None] + np.arange(1, 7)[None, :]) % n_items
    tower = SimpleNamespace(tokenize=lambda texts, n: {"input_ids": torch.zeros(len(texts), 1),
                                                       "attention_mask": torch.ones(len(texts), 1)})
    c = TwoTowerConfig(batch_size=8, samples_per_user=3, hard_negatives=2)
    source = PairSource(inter, ["x"] * n_items, tower, c, neighbours, np.array(["x"] * n_items))
    examples = 0
    for batch in source.epoch(0):
        targets = batch.items[:batch.n_targets].numpy()
        negatives = batch.items[batch.n_targets:].numpy().reshape(len(targets), 2)
        for t, negs in zip(targets, negatives):
            user_items = set(range(t // 4 * 4, t // 4 * 4 + 4))
            assert set(negs) <= set(neighbours[t]) and not set(negs) & user_items
            examples += 1
    assert examples == n_users * 3
    # a user who holds every neighbour gets other items instead
    rng = np.random.default_rng(0)
    assert not set(source.hard_negatives(0, np.arange(7), rng)) & set(range(7))
