"""Differentially private training: per-user gradients, user-level Poisson sampling, the accountant,
exact resume, the guarantee recorded with the model, and the refusals."""

import json

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from lmrec.config import parse_options, parse_sets
from lmrec.data import IdMap, Interactions
from lmrec.data.batching import SequenceBatch, SequenceWindows, UserSampledWindows, take_rows
from lmrec.data.items import ItemTable
from lmrec.errors import ConfigError
from lmrec.nn.losses import FullSoftmaxCE, InBatchSoftmax, SampledSoftmax
from lmrec.registry import create, load_model
from lmrec.train import TrainConfig, Trainer
from lmrec.train.private import PrivacyConfig, loop_example_grads, vmap_example_grads

from .test_trainer import Interrupt, InterruptAfter, net, scripted_validation

N_ITEMS = 12


def interactions(n_users=24, length=7, seed=0):
    """Each user walks the item ring from a random start."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        start = rng.integers(N_ITEMS)
        users += [u] * length
        items += ((start + np.arange(length)) % N_ITEMS).tolist()
    return Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(N_ITEMS)),
                        time=np.tile(np.arange(length), n_users))


def user_sampled(batch_size=8, max_len=4, seed=0, **kw):
    return UserSampledWindows(SequenceWindows(interactions(**kw).sequences(), max_len, batch_size), batch_size, seed)


# --- per-user gradients ------------------------------------------------------------------------------------
def assert_same_gradients(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding, measured against the tensor's own scale: the two paths sum in different
    orders, so an element near zero in a tensor whose entries reach ~50 differs by ~1e-5 (CPU-dependent),
    while a wrong per-user gradient is off by the order of the gradient itself."""
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * max(expected.abs().max().item(), 0.1))


def full_batch():
    windows = SequenceWindows(interactions().sequences(), max_len=4, batch_size=64, windows="last")
    return next(windows.epoch(0))  # 24 users, one window each, all the same length


def test_per_user_gradients_by_vmap_equal_the_loop_and_average_to_the_batch_gradient():
    model, loss, batch = net(), FullSoftmaxCE(), full_batch()
    model.eval()  # no dropout: the three computations must see the same function
    params = {n: p for n, p in model.named_parameters()}
    by_vmap, vmap_losses = vmap_example_grads(model, loss.example, batch, params)
    by_loop, loop_losses = loop_example_grads(model, loss, batch, params)
    chunked, _ = vmap_example_grads(model, loss.example, batch, params, chunk=5)  # 24 users: 5 chunks, one short
    model.zero_grad()
    loss(model, batch).backward()  # every window has the same number of targets: mean of means = mean
    for name, p in params.items():
        assert by_vmap[name].shape == (len(batch), *p.shape)
        assert_same_gradients(by_vmap[name], by_loop[name])
        torch.testing.assert_close(chunked[name], by_vmap[name], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(by_loop[name].mean(0), p.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(vmap_losses, loop_losses, rtol=1e-5, atol=1e-6)
    # the item table is both input and output (tied): rows of items a user never touched still get gradient
    # through the softmax, and the padding row gets none
    assert (by_loop["items.weight"][:, 0] == 0).all() and (by_loop["items.weight"][0, 1:].abs().sum(1) > 0).all()


@pytest.mark.parametrize("lm_prior", [False, True])
def test_textseq_per_user_gradients_by_vmap_equal_the_loop(lm_prior):
    """TextSeqRec adapts each item present in a batch once (torch.unique, which vmap cannot run); a one-row
    batch takes another path, so its per-user gradients batch too, and must be the same."""
    inter = interactions()
    items = ItemTable(inter.items, {"title": [f"thing {i} of kind {i % 3}" for i in range(N_ITEMS)]})
    model = create("textseq", encoder="hash:32", dim=16, layers=1, heads=2, max_len=4, lm_prior=lm_prior,
                   dropout=0.0, adaptor_dropout=0.0)
    model.inputs_ = model._prepare_inputs(inter, items)
    net = model._new_net(N_ITEMS, model.inputs_, np.ones(N_ITEMS, dtype=bool)).eval()
    batch = next(SequenceWindows(inter.sequences(), max_len=4, batch_size=64).epoch(0))
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}
    by_vmap, _ = vmap_example_grads(net, FullSoftmaxCE().example, batch, params)
    by_loop, _ = loop_example_grads(net, FullSoftmaxCE(), batch, params)
    for name in params:
        assert_same_gradients(by_vmap[name], by_loop[name])
    row = take_rows(batch, slice(0, 1))
    torch.testing.assert_close(net.sequence_states(row), net.sequence_states(batch)[:1, -row.tokens.shape[1]:])


def test_one_example_loss_is_the_batch_loss_of_that_row():
    model, loss = net(), FullSoftmaxCE()
    model.eval()
    windows = SequenceWindows(interactions().sequences(), max_len=4, batch_size=64, windows="all")
    batch = next(windows.epoch(0))
    padded = int((batch.targets < 0).any(1).sum())
    assert padded > 0  # rows of different lengths: padding positions must weigh nothing
    for i in range(len(batch)):
        row = SequenceBatch(batch.tokens[i:i + 1], batch.targets[i:i + 1], batch.users[i:i + 1])
        torch.testing.assert_close(loss.example(model, row), loss(model, row))
    assert FullSoftmaxCE(mask_history=True).example is None  # its mask selects positions: the loop path
    sampled = SampledSoftmax(N_ITEMS, negatives=5)
    for i in range(len(batch)):
        row = SequenceBatch(batch.tokens[i:i + 1], batch.targets[i:i + 1], batch.users[i:i + 1])
        torch.manual_seed(i)
        expected = sampled(model, row)
        torch.manual_seed(i)  # the same negatives
        torch.testing.assert_close(sampled.example(model, row), expected)


# --- user-level sampling ------------------------------------------------------------------------------------
def test_user_sampling_takes_each_user_at_most_once_per_step_at_the_stated_rate():
    data = user_sampled(batch_size=6, max_len=2, n_users=30, length=9)  # 4 windows per user
    assert data.sampling.n_users == 30 and data.sampling.sample_rate == pytest.approx(0.2)
    assert data.steps_per_epoch == 5
    counts, picked = np.zeros(30), {}
    for epoch in range(40):
        for batch in data.epoch(epoch):
            users = batch.users.numpy()
            assert len(np.unique(users)) == len(users)  # one example per sampled user
            counts[users] += 1
            for u, tokens in zip(users, batch.tokens.numpy()):
                picked.setdefault(u, set()).add(tuple(tokens))
    rate = counts / (40 * 5)
    assert abs(rate.mean() - 0.2) < 0.02 and rate.min() > 0.08  # Poisson: each user independently, p = 0.2
    assert np.mean([len(v) for v in picked.values()]) > 3  # the user's windows are drawn, not always the same
    first = [b.users.tolist() for b in data.epoch(3)]
    assert first == [b.users.tolist() for b in data.epoch(3)] != [b.users.tolist() for b in data.epoch(4)]


def test_an_empty_draw_is_an_empty_batch():
    data = user_sampled(batch_size=1, n_users=24)  # rate 1/24: many steps draw nobody
    sizes = [len(b) for e in range(5) for b in data.epoch(e)]
    assert 0 in sizes and max(sizes) >= 1


# --- the accountant and training ---------------------------------------------------------------------------
def test_a_noise_multiplier_run_reports_the_epsilon_of_opacus_accountant():
    data = user_sampled(batch_size=6)
    config = TrainConfig(epochs=3, lr=1e-2, privacy=PrivacyConfig(noise_multiplier=1.3, max_grad_norm=0.5))
    result = Trainer(config).fit(net(), FullSoftmaxCE(), data)
    record = result.privacy
    steps = 3 * data.steps_per_epoch
    reference = RDPAccountant()
    reference.history = [(1.3, 0.25, steps)]
    assert record["steps"] == steps == result.steps and record["sample_rate"] == 0.25
    assert record["delta"] == pytest.approx(0.1 / 24) and record["unit"] == "user"
    assert record["epsilon"] == pytest.approx(reference.get_epsilon(0.1 / 24), rel=1e-9)


def test_a_target_epsilon_calibrates_the_noise_and_is_not_exceeded():
    data = user_sampled(batch_size=6)
    result = Trainer(TrainConfig(epochs=4, privacy=PrivacyConfig(epsilon=2.0, delta=1e-3))).fit(
        net(), FullSoftmaxCE(), data)
    record = result.privacy
    assert 1.8 < record["epsilon"] <= 2.0 and record["target_epsilon"] == 2.0 and record["noise_multiplier"] > 1


def test_a_resumed_run_asked_for_more_epochs_stops_when_the_budget_is_spent(tmp_path):
    data = user_sampled(batch_size=6)
    private = PrivacyConfig(epsilon=2.0, delta=1e-3)
    first = Trainer(TrainConfig(epochs=2, privacy=private, checkpoint_dir=str(tmp_path))).fit(
        net(), FullSoftmaxCE(), data)
    more = Trainer(TrainConfig(epochs=6, privacy=private, checkpoint_dir=str(tmp_path))).fit(
        net(), FullSoftmaxCE(), data)
    assert more.privacy["noise_multiplier"] == first.privacy["noise_multiplier"]  # the noise the run began with
    assert more.privacy["epsilon"] <= 2.0 * 1.01 and 8 <= more.steps < 24  # stopped inside epoch 3


def test_a_killed_private_run_resumes_exactly(tmp_path):
    cfg = dict(epochs=3, lr=1e-2, checkpoint_every=3,
               privacy=PrivacyConfig(noise_multiplier=0.8, per_sample="loop"))  # loop: one loss call per user
    data = user_sampled(batch_size=6)
    full = net()
    ref = Trainer(TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "a"))).fit(
        full, FullSoftmaxCE(), data, scripted_validation([0.1, 0.3, 0.2]))
    sizes = [len(b) for e in range(2) for b in data.epoch(e)]
    run = str(tmp_path / "b")
    with pytest.raises(Interrupt):  # killed in epoch 2, after the checkpoint at its start
        Trainer(TrainConfig(**cfg, checkpoint_dir=run)).fit(
            net(), InterruptAfter(FullSoftmaxCE(), sum(sizes[:5])), data, scripted_validation([0.1, 0.3, 0.2]))
    resumed = net(seed=5)  # everything must come from the checkpoint, the noise's RNG state included
    res = Trainer(TrainConfig(**cfg, checkpoint_dir=run)).fit(resumed, FullSoftmaxCE(), data,
                                                             scripted_validation([0.3, 0.2]))
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert res.privacy["epsilon"] == pytest.approx(ref.privacy["epsilon"]) and res.steps == ref.steps == 12


def test_clipping_bounds_each_users_contribution():
    """Without noise the update's gradient is the sum of the clipped per-user gradients over the expected
    batch size: at most C * users in the batch / expected users, however large the raw gradients."""
    data = user_sampled(batch_size=6)
    model, bound = net(), 1e-3
    Trainer(TrainConfig(epochs=1, privacy=PrivacyConfig(noise_multiplier=0.0, max_grad_norm=bound))).fit(
        model, FullSoftmaxCE(), data)
    last = list(data.epoch(0))[-1]
    applied = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))  # the last step's gradient
    model.zero_grad()
    FullSoftmaxCE()(model, last).backward()
    raw = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert 0 < applied <= bound * len(last) / 6 * (1 + 1e-4) and raw > 100 * applied


# --- models, saving, refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_sequence_models_train_privately_and_keep_the_guarantee_when_saved(tmp_path, name):
    params = dict(dim=16, layers=1, heads=2, max_len=4, epochs=2, batch_size=6,
                  privacy={"epsilon": 8.0, "max_grad_norm": 1.0})
    if name == "gru4rec":
        params = {k: v for k, v in params.items() if k not in ("layers", "heads")}
    model = create(name, **params).fit(interactions())
    assert model.privacy_["epsilon"] <= 8.0 and model.privacy_["users"] == 24
    assert model.popularity_.max() == 1.0  # a private model keeps which items occur, not their counts
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.privacy_ == model.privacy_
    assert json.loads((tmp_path / "m" / "model.json").read_text())["learned"]["privacy_"]["epsilon"] <= 8.0


def test_a_private_sampled_softmax_draws_negatives_uniformly_over_training_items():
    inter = interactions()
    model = create("sasrec", dim=16, layers=1, heads=2, max_len=4, epochs=1, loss="sampled_softmax", negatives=5,
                   privacy={"noise_multiplier": 1.0})
    seen = []
    original = SampledSoftmax.__init__

    def spy(self, n_items, negatives=256, probs=None):
        seen.append(np.asarray(probs))
        original(self, n_items, negatives, probs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SampledSoftmax, "__init__", spy)
        model.fit(inter)
    counts = np.bincount(inter.item, minlength=N_ITEMS)
    assert len(set(counts)) > 1 and np.array_equal(seen[0], (counts > 0).astype(float))


def test_refusals():
    with pytest.raises(ConfigError, match="not both"):
        create("sasrec", privacy={"epsilon": 1.0, "noise_multiplier": 1.0})
    with pytest.raises(ConfigError, match="delta alone"):
        create("sasrec", privacy={"delta": 1e-5})
    small = dict(dim=16, layers=1, heads=2, max_len=4, epochs=1)
    with pytest.raises(ConfigError, match="not below 1 / number of users"):
        create("sasrec", **small, privacy={"epsilon": 1.0, "delta": 0.1}).fit(interactions())
    with pytest.raises(ConfigError, match="per-user clipping cannot bound"):
        Trainer(TrainConfig(privacy=PrivacyConfig(epsilon=1.0))).fit(net(), InBatchSoftmax(), user_sampled())
    with pytest.raises(ConfigError, match="sample users"):
        create("multvae", epochs=1, privacy={"epsilon": 1.0}).fit(interactions())


def test_dotted_options_set_a_nested_section():
    assert parse_options(["privacy.epsilon=4", "privacy.delta=1e-5", "epochs=3"]) == {
        "privacy": {"epsilon": 4, "delta": 1e-5}, "epochs": 3}
    assert parse_sets(["sasrec.privacy.epsilon=2"]) == {"sasrec": {"privacy": {"epsilon": 2}}}
    with pytest.raises(ConfigError, match="both as a value and as a section"):
        parse_options(["privacy=1", "privacy.epsilon=2"])
    assert create("sasrec", **parse_options(["privacy.epsilon=4"])).config.privacy.epsilon == 4
