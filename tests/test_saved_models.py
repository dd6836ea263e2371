"""The one saved-model format: every model kind round-trips exactly; damaged files give one-line errors.

Rankers are covered by ``tests/models/test_recommenders.py`` (every registered ranker) and
``tests/transfer`` (TextSeqRec with LoRA, pretrained artifacts); here the CTR models, the reranker,
the two-tower with LoRA, the format checks, and a guard that no registered model escapes these tests.
"""

import json

import numpy as np
import pytest

from lmrec.ctr import CTRExamples, ctr_examples
from lmrec.data import leave_one_out
from lmrec.errors import ArtifactError, ConfigError
from lmrec.eval import Evaluator
from lmrec.models.base import FORMAT, MODEL_JSON, STATE_FILE
from lmrec.registry import MODELS, create, load_model, names
from tests.ctr.test_ctr import WORDS, colour_ctr
from tests.text import tiny_models

# Registered models and the test that round-trips each; a new model must be added somewhere.
ROUND_TRIPPED_ELSEWHERE = set(names(("ranker",)))  # tests/models/test_recommenders.py
ROUND_TRIPPED_HERE = {"id-fm", "frozen-mlp", "cross-encoder", "relevance-mlp"}


def test_every_registered_model_has_a_round_trip_test():
    assert set(MODELS) == ROUND_TRIPPED_ELSEWHERE | ROUND_TRIPPED_HERE
    assert {c.kind for c in MODELS.values()} == {"ranker", "ctr", "reranker"}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_models.tiny_bert(tmp_path_factory.mktemp("bert"), WORDS, hidden=16, layers=1)


@pytest.mark.parametrize("name,params", [
    ("id-fm", {"epochs": 2}),
    ("frozen-mlp", {"encoder": "hash:64", "epochs": 2}),
    ("cross-encoder", {"epochs": 1, "tuning": "full"}),
    ("cross-encoder", {"epochs": 1, "tuning": "lora", "lora_rank": 2, "lora_targets": ["query", "value"]}),
])
def test_ctr_models_round_trip_with_identical_predictions(name, params, bert, tmp_path):
    split, items = colour_ctr(n_users=8, per_user=6)
    train, test = ctr_examples(split, "train"), ctr_examples(split, "test")
    if name == "cross-encoder":
        params = {**params, "encoder": str(bert)}
    model = create(name, **params).fit(train, items)
    loaded = load_model(model.save(tmp_path / "m"))
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    if name == "cross-encoder":  # the saved classifier is a Hugging Face folder of its own: no base model needed
        assert (tmp_path / "m" / "backbone" / "model.safetensors").is_file()


def test_relevance_reranker_round_trips(tmp_path):
    from tests.ctr.test_relevance import colour_sequences

    split, items = colour_sequences()
    pop = create("pop").fit(split.train)
    model = create("relevance-mlp", encoder="hash:32", epochs=2).fit(pop, split.train, items, k=12)
    loaded = load_model(model.save(tmp_path / "r"))
    seqs = split.train.sequences()
    ex = CTRExamples(np.repeat([0, 1], 12), np.tile(np.arange(12), 2), np.zeros(24, dtype=np.float32),
                     [seqs[0]] * 12 + [seqs[1]] * 12, split.train.n_users, ranks=np.tile(np.arange(12), 2))
    assert loaded.k_ == model.k_
    np.testing.assert_array_equal(loaded.predict(ex), model.predict(ex))


def test_two_tower_with_lora_round_trips_without_the_base_model(tmp_path):
    from tests.text.test_tuning import WORDS as TEXT_WORDS
    from tests.text.test_tuning import color_data

    (tmp_path / "base").mkdir()
    bert = tiny_models.tiny_bert(tmp_path / "base", TEXT_WORDS, hidden=16, layers=1)
    inter, items = color_data()
    split = leave_one_out(inter)
    model = create("twotower", encoder=str(bert), tuning="lora", lora_rank=2, lora_targets=["query", "value"],
                   epochs=1, batch_size=8, samples_per_user=1).fit(split.train, items)
    saved = model.save(tmp_path / "tt")
    bert.rename(tmp_path / "elsewhere")  # the base model is gone: the saved model must not need it
    loaded = load_model(saved)
    q = Evaluator(split, "test").queries
    np.testing.assert_allclose(loaded.score(q), model.score(q), atol=1e-5)


@pytest.fixture
def saved(tmp_path):
    from tests.models.test_recommenders import planted

    split, items = planted()
    return create("ease", l2=1.0).fit(split.train, items).save(tmp_path / "ease")


def test_no_pickle_anywhere_in_a_saved_model(saved):
    assert sorted(p.name for p in saved.iterdir()) == [MODEL_JSON, STATE_FILE, "strings.json"]


@pytest.mark.parametrize("damage,message", [
    (lambda p: (p / STATE_FILE).write_bytes((p / STATE_FILE).read_bytes()[:-7]), "checksum differs"),
    (lambda p: (p / STATE_FILE).unlink(), "missing"),
    (lambda p: (p / MODEL_JSON).write_text("{not json"), "not a valid saved model description"),
    (lambda p: (p / MODEL_JSON).write_text(json.dumps({**json.loads((p / MODEL_JSON).read_text()),
                                                       "format": FORMAT + 1, "lmrec_version": "9.9"})),
     "format 2 .written by lmrec 9.9.; this lmrec .* reads format 1"),
])
def test_a_damaged_saved_model_gives_one_line_naming_the_file(saved, damage, message):
    damage(saved)
    with pytest.raises(ArtifactError, match=message) as exc:
        load_model(saved)
    assert str(saved) in str(exc.value) and "\n" not in str(exc.value)


def test_a_flipped_byte_is_caught_even_when_the_file_still_parses(saved):
    data = bytearray((saved / STATE_FILE).read_bytes())
    data[-1] ^= 1  # inside the last tensor: safetensors would read it without complaint
    (saved / STATE_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum differs"):
        load_model(saved)


def test_save_never_replaces_a_folder_that_is_not_a_saved_model(saved, tmp_path):
    from tests.models.test_recommenders import planted

    split, items = planted()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a saved model"):
        create("pop").fit(split.train).save(other)
    assert (other / "holiday.jpg").is_file()
    create("pop").fit(split.train).save(saved)  # a saved model is replaced as a whole
    assert load_model(saved).name == "pop"


def test_a_save_killed_halfway_leaves_the_previous_model_intact(saved, monkeypatch):
    from lmrec.models import base
    from tests.models.test_recommenders import planted

    split, _ = planted()
    before = load_model(saved).config

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        create("pop").fit(split.train).save(saved)
    assert load_model(saved).config == before  # still the complete earlier model, no half-written one
    assert [p.name for p in saved.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
