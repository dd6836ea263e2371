"""Cross-domain transfer on synthetic domains that share a planted text pattern.

Every domain has items of KINDS kinds; an item's title is its kind word plus a token unique to the
item. Users move from kind k to kind k+1. A model pretrained on two domains has learned "after a
<kind k> item comes a <kind k+1> item" from text alone, so on a third domain with entirely new items
it must rank the next kind's items first without any training there (zero-shot).
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.batching import MultiDomainWindows, SequenceWindows
from lmrec.data.interactions import Sequences
from lmrec.errors import ArtifactError, ConfigError
from lmrec.registry import create, load_model
from lmrec.transfer import PretrainedArtifact, keep_users, pretrain, transfer, transfer_grid
from lmrec.transfer.workflow import Target

KINDS = ["violin", "hammer", "tulip", "kettle", "comet", "saddle"]  # a user's six items: one of each kind
PER_KIND = 4
SMALL = dict(dim=16, heads=2, layers=1, max_len=6, batch_size=32, lr=1e-2, dropout=0.0, adaptor_dropout=0.0,
             experts=2, encoder="hash:256", patience=3, valid_users=None)


def write_domain(home, name, n_users=120, length=6, seed=0, text=True):
    rng = np.random.default_rng(seed)
    folder = home / name
    folder.mkdir(parents=True)
    rows = ["user_id,item_id,time"]
    for u in range(n_users):
        k = rng.integers(len(KINDS))
        for t in range(length):
            item = ((k + t) % len(KINDS)) * PER_KIND + rng.integers(PER_KIND)
            rows.append(f"{name}-u{u},{name}-i{item},{t}")
    (folder / "logs.csv").write_text("\n".join(rows) + "\n")
    config = "interactions: logs.csv\ncolumns: {time: time}\n"
    if text:
        titles = [f"{name}-i{i},{KINDS[i // PER_KIND]} {name}x{i}" for i in range(len(KINDS) * PER_KIND)]
        (folder / "items.csv").write_text("item_id,title\n" + "\n".join(titles) + "\n")
        config += "items: items.csv\n"
    (folder / "lmrec.yaml").write_text(config)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("domains")
    for seed, name in enumerate(["alpha", "beta", "gamma"]):
        write_domain(home, name, seed=seed)
    write_domain(home, "notext", seed=5, text=False)
    return home


@pytest.fixture(scope="module")
def base(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    run = pretrain(["alpha", "beta"], {**SMALL, "epochs": 25}, out, data_dir=home)
    return out, run


def test_domain_balanced_batches():
    def windows(n_users, offset):
        offsets = np.arange(n_users + 1) * 3
        return SequenceWindows(Sequences(offsets, np.arange(3 * n_users) + offset, None), 5, 8)

    big, small = windows(40, 0), windows(6, 1000)
    data = MultiDomainWindows([big, small], batch_size=8, seed=1)
    assert data.steps_per_epoch == 6  # ceil(46 / 8)
    batches = list(data.epoch(0))
    assert len(batches) == 6
    for b in batches:
        first = b.tokens[:, -1] - 1  # the most recent input item of each window
        assert (first < 1000).sum() == 4 and (first >= 1000).sum() == 4
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(batches, data.epoch(0)))
    big_rows = torch.cat([b.tokens[b.tokens[:, -1] <= 1000, -1] for b in batches])
    assert len(torch.unique(big_rows)) == 24  # the large domain is sampled without repeats in an epoch
    single = list(MultiDomainWindows([big, small], batch_size=8, seed=1, mix="single").epoch(0))
    domains = [int((b.tokens[:, -1] > 1000).all()) for b in single]
    assert len(single) == 6 and sorted(domains) == [0, 0, 0, 1, 1, 1]  # one domain per batch, equal turns
    assert all(((b.tokens[:, -1] > 1000).all() or (b.tokens[:, -1] <= 1000).all()) for b in single)


def test_zero_shot_transfers_the_planted_pattern_to_new_items(base, home):
    out, run = base
    assert run.result.best_metric > 0.4  # mean valid ndcg@10 over the two source domains
    model, zs = transfer(out, "gamma", "zero-shot", data_dir=home)
    pop = Target("gamma", PretrainedArtifact.load(out), data_dir=home).run(create("pop"), "pop", 1.0)
    assert zs.trainable_params == 0 and zs.epochs == 0
    # four items of the right kind among 19 unseen; the pretrained model finds them with no target training
    # (NDCG@10 is at most ~0.64 when the target is one of four equally likely items ranked first)
    assert zs.result.means()["recall@10"] >= 0.9
    assert zs.result.means()["ndcg@10"] >= 0.5 > 2 * pop.result.means()["ndcg@10"]


def test_artifact_describes_itself_and_round_trips_exactly(base):
    out, run = base
    meta = json.loads((out / "artifact.json").read_text())
    assert [d["name"] for d in meta["domains"]] == ["alpha", "beta"]
    assert meta["config"]["dim"] == 16 and meta["encoder"] == "hash:256" and meta["encoder_fingerprint"]
    loaded = PretrainedArtifact.load(out)
    assert loaded.weights.keys() == run.artifact.weights.keys()
    assert all(torch.equal(loaded.weights[k], run.artifact.weights[k]) for k in loaded.weights)
    assert not any(k.startswith("ids.") for k in loaded.weights)


def _count(module, keep=lambda name: True):
    return sum(p.numel() for n, p in module.named_parameters() if keep(n))


def test_modes_train_exactly_the_parts_they_claim(base, home):
    out, _ = base
    art = PretrainedArtifact.load(out)
    tgt = Target("gamma", art, data_dir=home)
    adaptor = sum(v.numel() for k, v in art.weights.items() if k.startswith("adaptor."))
    norms = sum(v.numel() for k, v in art.weights.items() if k.startswith("encoder.") and "norm" in k)
    d, inner, rank = 16, 64, 8
    lora = rank * ((d + 3 * d) + (d + d) + (d + inner) + (inner + d))  # qkv, proj, ff.0, ff.2 of one layer
    expected = {"adapter": adaptor + norms, "lora": adaptor + lora, "full": sum(v.numel() for v in art.weights.values())}
    for mode, count in expected.items():
        model, run = transfer(out, "gamma", mode, params={"epochs": 2}, prepared_target=tgt)
        assert run.trainable_params == count, mode
        after = model.net_.state_dict()
        if mode == "adapter":  # frozen parts bit-identical to the artifact
            frozen = [k for k in art.weights if k.startswith("encoder.") and "norm" not in k]
            assert frozen and all(torch.equal(after[k], art.weights[k]) for k in frozen)
        if mode == "lora":  # merged back into a plain network: no peft keys, attention weights changed
            assert set(after) == set(art.weights)
            assert not torch.equal(after["encoder.blocks.0.qkv.weight"], art.weights["encoder.blocks.0.qkv.weight"])
            assert torch.equal(after["encoder.position.weight"], art.weights["encoder.position.weight"])


def test_lora_model_saves_and_loads_with_identical_scores(base, home, tmp_path):
    out, _ = base
    model, _ = transfer(out, "gamma", "lora", params={"epochs": 2}, data_dir=home)
    tgt = Target("gamma", PretrainedArtifact.load(out), data_dir=home)
    loaded = load_model(model.save(tmp_path / "m"))
    q = tgt.test.queries
    assert np.array_equal(model.score(q), loaded.score(q))


def test_lora_merge_matches_the_unmerged_adapter():
    from peft import LoraConfig, get_peft_model

    from lmrec.models.textseq import LORA_TARGETS
    from lmrec.nn.transformer import SequenceEncoder

    torch.manual_seed(0)
    enc = SequenceEncoder(16, 2, 2, 8, 0.0)
    wrapped = get_peft_model(enc, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    for name, p in wrapped.named_parameters():
        if "lora_B" in name:
            p.data.normal_(std=0.5)  # a trained-looking update (B starts at zero)
    x, valid = torch.randn(3, 8, 16), torch.ones(3, 8, dtype=torch.bool)
    valid[0, :3] = False
    with torch.no_grad():
        unmerged = wrapped(x, valid)
        merged = wrapped.merge_and_unload()(x, valid)
    assert (unmerged - merged).abs().max() < 1e-5


def test_bad_inputs_get_clear_errors(base, home, tmp_path):
    out, _ = base
    with pytest.raises(ConfigError, match="'notext' has no item text"):
        transfer(out, "notext", "adapter", data_dir=home)
    with pytest.raises(ConfigError, match="keeps no training users"):
        transfer(out, "gamma", "adapter", fraction=0.001, data_dir=home)
    with pytest.raises(ConfigError, match="dim: pretrained 16, now 32"):
        transfer(out, "gamma", "adapter", params={"dim": 32}, data_dir=home)
    with pytest.raises(ConfigError, match="unknown transfer mode"):
        transfer(out, "gamma", "prefix-tuning", data_dir=home)
    # an artifact whose encoder no longer gives the same vectors
    stale = tmp_path / "stale"
    art = PretrainedArtifact.load(out)
    art.encoder_fingerprint = "0" * 64
    art.save(stale)
    with pytest.raises(ConfigError, match="re-encoded|pretrain again"):
        transfer(stale, "gamma", "adapter", data_dir=home)
    with pytest.raises(ArtifactError, match="not a pretrained artifact"):
        transfer(tmp_path, "gamma", "adapter", data_dir=home)
    # a truncated weights file or a damaged description is one line naming the file, not a library traceback
    weights = stale / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"weights.safetensors: unreadable"):
        transfer(stale, "gamma", "adapter", data_dir=home)
    (stale / "artifact.json").write_text("{broken")
    with pytest.raises(ArtifactError, match=r"artifact.json: not a valid artifact description"):
        transfer(stale, "gamma", "adapter", data_dir=home)


def test_fraction_keeps_whole_users():
    from lmrec.data import IdMap, Interactions

    inter = Interactions(np.repeat(np.arange(10), 3), np.arange(30) % 7, IdMap(range(10)), IdMap(range(7)))
    kept = keep_users(inter, 0.3, seed=0)
    assert len(kept.user_ids()) == 3 and len(kept) == 9
    assert keep_users(inter, 1.0) is inter


def test_grid_writes_table_plot_and_records(base, home, tmp_path):
    out, _ = base
    grid = transfer_grid(out, "gamma", tmp_path / "grid", modes=("zero-shot", "adapter", "scratch"),
                         fractions=(0.25, 1.0), references=("pop",), params={"*": {"epochs": 3}}, data_dir=home)
    records = json.loads((tmp_path / "grid" / "transfer.json").read_text())["records"]
    assert [(r["mode"], r["fraction"]) for r in records] == [
        ("zero-shot", 0.0), ("adapter", 0.25), ("scratch", 0.25), ("pop", 0.25),
        ("adapter", 1.0), ("scratch", 1.0), ("pop", 1.0)]
    assert {"recall@10", "ndcg@10", "trainable_params", "train_seconds"} <= set(records[0])
    assert records[1]["train_users"] == 30 and records[4]["train_users"] == 120
    assert (tmp_path / "grid" / "transfer.png").stat().st_size > 1000
    md = (tmp_path / "grid" / "transfer.md").read_text()
    assert "adapter" in md and "wilcoxon_p" in md
    assert [s["b"] for s in grid.significance] == ["scratch", "scratch"]


def test_cli_pretrain_and_transfer(home, tmp_path):
    runner = CliRunner()
    art = tmp_path / "art"
    # the sequence-sequence contrastive term on as well
    options = {**SMALL, "epochs": 2, "seq_weight": 0.1}
    sets = [a for k, v in options.items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    r = runner.invoke(app, ["pretrain", "--datasets", "alpha,beta", "--out", str(art), "--data-dir", str(home), *sets])
    assert r.exit_code == 0, r.output
    assert (art / "artifact.json").is_file() and (art / "train" / "checkpoint.pt").is_file()
    assert PretrainedArtifact.load(art).summary["seq_weight"] == 0.1
    r = runner.invoke(app, ["transfer", "--from", str(art), "--target", "gamma", "--mode", "zero-shot",
                            "--data-dir", str(home), "--save", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "zero-shot" in r.output and (tmp_path / "m" / "model.json").is_file()


def test_lm_prior_is_pretrained_transferred_and_checked(base, home, tmp_path):
    out, _ = base
    prior_out = tmp_path / "prior"
    pretrain(["alpha", "beta"], {**SMALL, "epochs": 3, "lm_prior": True, "mask_history": True}, prior_out,
             data_dir=home)
    art = PretrainedArtifact.load(prior_out)
    tgt = Target("gamma", art, data_dir=home)
    model, _ = transfer(prior_out, "gamma", "zero-shot", prepared_target=tgt)
    assert torch.equal(model.net_.prior.raw_scale.detach(), art.weights["prior.raw_scale"])
    # adapter tuning also retunes the prior's weight on the target (one parameter)
    adaptor = sum(v.numel() for k, v in art.weights.items() if k.startswith("adaptor."))
    norms = sum(v.numel() for k, v in art.weights.items() if k.startswith("encoder.") and "norm" in k)
    _, run = transfer(prior_out, "gamma", "adapter", params={"epochs": 1}, prepared_target=tgt)
    assert run.trainable_params == adaptor + norms + 1
    # an artifact made before the option existed has no such key: it means the default (no prior)
    old = PretrainedArtifact.load(out)
    for key in ("lm_prior", "lm_prior_half_life"):
        old.config.pop(key)
    old.save(tmp_path / "old")
    model, _ = transfer(tmp_path / "old", "gamma", "zero-shot", data_dir=home)
    assert model.net_.prior is None
    with pytest.raises(ConfigError, match="lm_prior: pretrained False, now True"):
        transfer(tmp_path / "old", "gamma", "zero-shot", params={"lm_prior": True}, data_dir=home)


def test_a_private_adapter_transfer_trains_only_the_adapter_and_records_its_epsilon(base, home):
    """DP-SGD on the target (user level) over the adapter alone: the frozen pretrained parts are bit-identical
    afterwards, the budget is spent as asked, and the transferred text knowledge still ranks the planted kind."""
    out, _ = base
    art = PretrainedArtifact.load(out)
    model, run = transfer(out, "gamma", "adapter", params={"epochs": 3, "batch_size": 16,
                                                            "privacy": {"epsilon": 4.0, "max_grad_norm": 1.0}},
                          data_dir=home)
    privacy = model.privacy_
    assert privacy is not None and 3.9 < privacy["epsilon"] <= 4.0 and privacy["steps"] > 0
    after = model.net_.state_dict()
    frozen = [k for k in art.weights if k.startswith("encoder.") and "norm" not in k]
    assert frozen and all(torch.equal(after[k], art.weights[k]) for k in frozen)
    assert any(not torch.equal(after[k], art.weights[k]) for k in art.weights if k.startswith("adaptor."))
    assert run.result.means()["recall@10"] >= 0.5  # chance: about 10 of 19 unseen items, 4 of them right
