"""Explanations: exact terms add up to the score, occlusion matches them where the score is linear, the
planted pattern shows in who gets the credit, text models name the words; the endpoint and the CLI."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lmrec.bundle import Bundle
from lmrec.explain import explain, without_each
from lmrec.serve.app import create_app

MIXED = ["i0", "i2", "i4", "i1"]  # three even items, then one odd (the most recent)


def parity(raw):
    return int(raw[1:]) % 2


@pytest.fixture(scope="module")
def loaded(bundles):
    return {name: Bundle.load(path) for name, path in bundles.items()}


def top_recommendation(bundle, history):
    seq = np.array([bundle.items.index(h) for h in history])
    return seq, bundle.items.index(bundle.recommend(seq, 1)[0].item)


@pytest.mark.parametrize("name", ["ease", "itemknn", "lmcontent"])
def test_exact_terms_add_up_to_the_score(loaded, name):
    bundle = loaded[name]
    seq, item = top_recommendation(bundle, MIXED)
    found = explain(bundle.model, seq, item, len(bundle.users), bundle.catalogue)
    assert found.method == "exact" and len(found.history) == 4
    assert sum(c.contribution for c in found.history) == pytest.approx(found.score, abs=1e-5)
    contributions = [c.contribution for c in found.history]
    assert contributions == sorted(contributions, reverse=True)


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_occlusion_equals_the_exact_terms_of_a_linear_model(loaded, name):
    bundle = loaded[name]
    seq, item = top_recommendation(bundle, MIXED)
    model, n = bundle.model, len(bundle.items)
    exact = {c.item: c.contribution for c in explain(model, seq, item, len(bundle.users)).history}
    distinct, occluded = without_each(seq, n, len(bundle.users))
    full = explain(model, seq, item, len(bundle.users)).score
    occlusion = dict(zip(distinct.tolist(), (full - model.score(occluded)[:, item]).tolist()))
    assert exact.keys() == occlusion.keys()
    assert all(exact[j] == pytest.approx(occlusion[j], abs=1e-5) for j in exact)


@pytest.mark.parametrize("name", ["ease", "itemknn", "lmcontent", "sasrec", "textseq"])
def test_the_credit_goes_to_the_history_items_of_the_recommended_kind(loaded, name):
    """Even users take even items: whatever a model recommends after a mixed history, the history item with
    the largest contribution is of the same parity as the recommendation."""
    bundle = loaded[name]
    seq, item = top_recommendation(bundle, MIXED)
    found = explain(bundle.model, seq, item, len(bundle.users), bundle.catalogue)
    assert found.method == ("exact" if name in ("ease", "itemknn", "lmcontent") else "occlusion")
    best = bundle.items.raw(found.history[0].item)
    assert parity(best) == parity(bundle.items.raw(item)), [(bundle.items.raw(c.item), c.contribution)
                                                             for c in found.history]


@pytest.mark.parametrize("name", ["lmcontent", "textseq"])
def test_text_models_name_the_words_that_matched(loaded, name):
    bundle = loaded[name]
    seq, item = top_recommendation(bundle, MIXED)
    found = explain(bundle.model, seq, item, len(bundle.users), bundle.catalogue)
    words = [w.word.strip(".,") for w in found.words]
    kind = "odd" if parity(bundle.items.raw(item)) else "even"
    assert kind in words[:3], found.words  # the word the history shares with the item
    # the item's own number is in no history item's text: it explains nothing
    assert words.index(bundle.items.raw(item)[1:]) > words.index(kind)


@pytest.mark.parametrize("name", ["lmcontent", "textseq"])
def test_history_words_start_from_the_real_score(loaded, name):
    """Re-reading the top history item's own full text reproduces the item's score: the word weights are
    differences from the model's actual answer."""
    from lmrec.data.queries import Queries
    from lmrec.text.texts import default_template

    bundle = loaded[name]
    seq, item = top_recommendation(bundle, MIXED)
    found = explain(bundle.model, seq, item, len(bundle.users), bundle.catalogue)
    top = found.history[0].item
    text = bundle.catalogue.render(default_template(bundle.catalogue), [top])[0]
    again = bundle.model.score_with_history_texts(Queries.one(seq, len(bundle.items), len(bundle.users)), top,
                                                  [text], item)
    assert again[0] == pytest.approx(found.score, rel=1e-4, abs=1e-4)
    assert found.history_words and found.history_words[0].contribution >= found.history_words[-1].contribution


def test_models_without_text_give_no_words(loaded):
    bundle = loaded["sasrec"]
    seq, item = top_recommendation(bundle, MIXED)
    assert explain(bundle.model, seq, item, len(bundle.users), bundle.catalogue).words == []


def test_the_explain_endpoint(bundles, tmp_path):
    client = TestClient(create_app(bundles["itemknn"], tmp_path / "e.sqlite"))
    r = client.post("/explain", json={"history": ["i0", "i2", "i1"], "item": "i4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "exact" and body["title"] == "gadget even model 4" and body["words"] == []
    assert {h["id"] for h in body["history"]} == {"i0", "i2", "i1"}
    assert body["history"][0]["id"] in ("i0", "i2") and sum(h["contribution"] for h in body["history"]) == \
        pytest.approx(body["score"], abs=1e-5)
    assert client.post("/explain", json={"user_id": "u2", "item": "i4"}).status_code == 200
    for bad, status in (({"item": "i4"}, 422), ({"history": ["i0"], "item": "nope"}, 404),
                        ({"user_id": "nobody", "item": "i4"}, 404), ({"history": [], "item": "i4"}, 422)):
        assert client.post("/explain", json=bad).status_code == status, bad


def test_the_explain_command(bundles, capsys):
    from lmrec.cli import main

    code = main(["explain", "--model", str(bundles["lmcontent"]), "--history", "i0,i2,i1", "--item", "i3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "exact" in out and "gadget odd model 1" in out and "words: " in out
    code = main(["explain", "--model", str(bundles["lmcontent"]), "--item", "i3"])
    _, err = capsys.readouterr()
    assert code == 2 and "give either a user" in err and len(err.strip().splitlines()) == 1
