"""The training loop: exact resume, NaN handling, early stopping with best weights, schedule, logs."""

import json
import sys

import numpy as np
import pytest
import torch

from lmrec.data import IdMap, Interactions
from lmrec.data.batching import SequenceWindows
from lmrec.errors import ArtifactError, ConfigError
from lmrec.models.sasrec import SASRecConfig, SASRecNet
from lmrec.nn.losses import BCELoss, BPRLoss, FullSoftmaxCE, SampledSoftmax
from lmrec.train import TrainConfig, Trainer, TrainingError

N_ITEMS = 12


def windows(batch_size=8):
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(24):
        start = rng.integers(N_ITEMS)
        seq = (start + np.arange(7)) % N_ITEMS
        users += [u] * 7
        items += seq.tolist()
        times += list(range(7))
    inter = Interactions(np.array(users), np.array(items), IdMap(range(24)), IdMap(range(N_ITEMS)), time=np.array(times))
    return SequenceWindows(inter.sequences(), max_len=4, batch_size=batch_size)


def net(seed=0):
    torch.manual_seed(seed)
    return SASRecNet(N_ITEMS, SASRecConfig(dim=16, heads=2, layers=1, max_len=4, dropout=0.3))


class Interrupt(Exception):
    pass


class InterruptAfter:
    """Wraps a loss and raises on call ``n + 1``, like a process killed mid-epoch."""

    def __init__(self, loss, n):
        self.loss, self.n, self.calls = loss, n, 0

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls > self.n:
            raise Interrupt
        return self.loss(model, batch)


def scripted_validation(values, model=None, snapshots=None):
    it = iter(values)

    def validate():
        if snapshots is not None:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"ndcg@10": next(it)}

    return validate


@pytest.mark.parametrize("loss", [FullSoftmaxCE(), SampledSoftmax(N_ITEMS, negatives=5), BCELoss(N_ITEMS, 2), BPRLoss(N_ITEMS)],
                         ids=["ce", "sampled", "bce", "bpr"])
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, loss):
    cfg = dict(epochs=3, lr=1e-2, schedule="cosine", warmup_steps=2, checkpoint_every=4)
    data = windows()
    full = net()
    ref = Trainer(TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "a"))).fit(
        full, loss, data, scripted_validation([0.1, 0.3, 0.2]))

    # second run: killed at step 10 of 18 (mid-epoch 2), after the checkpoint at step 8
    run = str(tmp_path / "b")
    with pytest.raises(Interrupt):
        Trainer(TrainConfig(**cfg, checkpoint_dir=run)).fit(net(), InterruptAfter(loss, 10), data,
                                                            scripted_validation([0.1, 0.3, 0.2]))
    resumed_net = net(seed=123)  # a different init: everything must come from the checkpoint
    res = Trainer(TrainConfig(**cfg, checkpoint_dir=run)).fit(resumed_net, loss, data,
                                                             scripted_validation([0.3, 0.2]))
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[k], v, rtol=0, atol=0)
    assert (res.best_epoch, res.epochs_run, res.steps) == (ref.best_epoch, ref.epochs_run, ref.steps) == (2, 3, 18)
    losses = [r["loss"] for r in ref.history]
    assert [r["loss"] for r in res.history] == losses
    logged = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged] == losses and logged[1]["valid"]["ndcg@10"] == 0.3


def test_checkpoint_from_another_config_is_refused(tmp_path):
    Trainer(TrainConfig(epochs=1, checkpoint_dir=str(tmp_path))).fit(net(), FullSoftmaxCE(), windows())
    with pytest.raises(ConfigError, match="different configuration.*lr"):
        Trainer(TrainConfig(epochs=2, lr=0.5, checkpoint_dir=str(tmp_path))).fit(net(), FullSoftmaxCE(), windows())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class NanAfter(InterruptAfter):
        def __call__(self, model, batch):
            self.calls += 1
            value = self.loss(model, batch)
            return value * float("nan") if self.calls > self.n else value

    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 6; the last good checkpoint \(step 4\)"):
        Trainer(TrainConfig(epochs=2, checkpoint_every=2, checkpoint_dir=str(tmp_path))).fit(
            net(), NanAfter(FullSoftmaxCE(), 5), windows())
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["loop"]["step"] == 4 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_early_stopping_restores_the_best_weights():
    model = net()
    snapshots = []
    res = Trainer(TrainConfig(epochs=10, lr=1e-2, patience=2)).fit(
        model, FullSoftmaxCE(), windows(), scripted_validation([0.1, 0.5, 0.4, 0.45, 0.9], model, snapshots))
    assert (res.epochs_run, res.best_epoch, res.best_metric) == (4, 2, 0.5)
    for k, v in snapshots[1].items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    assert snapshots[1]["encoder.norm.weight"].ne(snapshots[3]["encoder.norm.weight"]).any()


def test_training_lowers_the_loss_and_schedule_follows_warmup_then_cosine():
    res = Trainer(TrainConfig(epochs=20, lr=3e-2, warmup_steps=3, schedule="cosine")).fit(net(), FullSoftmaxCE(), windows())
    losses = [r["loss"] for r in res.history]
    assert losses[-1] < 0.6 * losses[0]
    trainer = Trainer(TrainConfig(lr=1.0, warmup_steps=2, schedule="cosine"))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = trainer._schedule(opt, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [0.5, 1.0, 1.0, np.cos(np.pi / 8) ** 2, 0.5, np.cos(3 * np.pi / 8) ** 2], atol=1e-9)


def test_fully_frozen_model_and_unknown_monitor_are_config_errors():
    model = net()
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="every parameter of the model is frozen"):
        Trainer(TrainConfig(epochs=1)).fit(model, FullSoftmaxCE(), windows())
    with pytest.raises(ConfigError, match="monitor metric 'ndcg@10' is not among"):
        Trainer(TrainConfig(epochs=1)).fit(net(), FullSoftmaxCE(), windows(), lambda: {"recall@5": 0.1})


def test_missing_logger_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails as if it were not installed
    with pytest.raises(ConfigError, match=r"MLflow tracking needs the mlflow package: pip install .lmrec\[tracking\]."):
        Trainer(TrainConfig(epochs=1, loggers=["mlflow"])).fit(net(), FullSoftmaxCE(), windows())


def test_epochs_are_logged_to_mlflow_and_tensorboard(tmp_path, monkeypatch):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    result = Trainer(TrainConfig(epochs=3, loggers=["mlflow", "tensorboard"], checkpoint_dir=str(run_dir))).fit(
        net(), FullSoftmaxCE(), windows(), lambda: {"ndcg@10": 0.5})
    losses = [r["loss"] for r in result.history]
    mlflow.set_tracking_uri(f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    logged = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    np.testing.assert_allclose([m.value for m in sorted(logged, key=lambda m: m.step)], losses, rtol=1e-6)
    assert run.data.metrics["valid/ndcg_at_10"] == 0.5
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    np.testing.assert_allclose([e.value for e in events.Scalars("loss")], losses, rtol=1e-6)


class _Planted:
    """Unpickling this object runs code (writes a file): what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_checkpoint_runs_no_code_and_gives_one_line(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"config": {}, "x": _Planted(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ArtifactError, match="not a checkpoint lmrec can read safely"):
        Trainer(TrainConfig(epochs=1, checkpoint_dir=str(tmp_path))).fit(net(), FullSoftmaxCE(), windows())
    assert not marker.exists()
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match="delete it to start over"):
        Trainer(TrainConfig(epochs=1, checkpoint_dir=str(tmp_path))).fit(net(), FullSoftmaxCE(), windows())
