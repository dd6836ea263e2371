"""Text in the service (free-text queries, cold-start items), and workers that share one store."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lmrec.serve.app import create_app

KEY = "t" * 24
H = {"X-API-Key": KEY}
NEW_EVEN = {"id": "i99", "fields": {"name": "gadget even model 99", "kind": "even"}}


def parity(ids):
    return [int(i[1:]) % 2 for i in ids]


def ranked(client, body):
    r = client.post("/recommend", json=body)
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()["items"]]


@pytest.fixture
def lmcontent(bundles, tmp_path):
    return TestClient(create_app(bundles["lmcontent"], tmp_path / "e.sqlite", api_key=KEY))


def test_a_free_text_query_ranks_by_what_it_says(lmcontent):
    assert set(parity(ranked(lmcontent, {"query": "odd gadget", "k": 8}))) == {1}
    # a negated phrase pushes its items down: "gadget, not odd" puts the even ones first
    assert set(parity(ranked(lmcontent, {"query": "gadget, not odd", "k": 8}))) == {0}
    # with a history, the query and the history both count: an odd session asking for even items
    mixed = ranked(lmcontent, {"history": ["i1", "i3"], "query": "even", "k": 16})
    assert mixed and "i1" not in mixed and "i3" not in mixed


def test_a_cold_start_item_is_recommendable_at_once(lmcontent):
    assert lmcontent.post("/items", json=NEW_EVEN).status_code == 401  # a write: the key is needed
    r = lmcontent.post("/items", json=NEW_EVEN, headers=H)
    assert r.status_code == 200 and r.json() == {"id": "i99", "items": 17}
    assert lmcontent.get("/items/i99").json()["fields"] == NEW_EVEN["fields"]
    # an even user gets it ahead of every odd item; an odd user after every odd item
    for user, before_all in (("u2", 1), ("u3", 0)):
        order = ranked(lmcontent, {"user_id": user, "k": 17, "exclude_seen": False})
        rest = [i for i in order[order.index("i99") + 1:]]
        if before_all:
            assert all(int(i[1:]) % 2 == 0 for i in order[:order.index("i99")])
        else:
            assert all(int(i[1:]) % 2 == 0 for i in rest)
    # events may name it from now on, and it is part of the user's history
    assert lmcontent.post("/events", json={"events": [{"user": "u5", "item": "i99"}]}, headers=H).status_code == 200
    assert lmcontent.get("/users/u5").json()["history"][0]["id"] == "i99"


@pytest.mark.parametrize("body,status,message", [
    (NEW_EVEN | {"id": "i3"}, 409, "already in the catalogue"),
    ({"id": "i50", "fields": {"colour": "red"}}, 422, "Input should be 'name' or 'kind'"),
    ({"id": "i50", "fields": {"name": "  "}}, 422, "should match pattern"),
    ({"id": "i50", "fields": {}}, 422, "at least 1 item"),
    ({"id": "i50"}, 422, "Field required"),
])
def test_bad_items_are_refused(lmcontent, body, status, message):
    r = lmcontent.post("/items", json=body, headers=H)
    assert r.status_code == status and message in r.text, r.text
    assert lmcontent.get("/ready").json()["items"] == 16


def test_an_id_model_says_it_cannot_rank_a_new_item(bundles, tmp_path):
    client = TestClient(create_app(bundles["sasrec"], tmp_path / "e.sqlite", api_key=KEY))
    r = client.post("/items", json=NEW_EVEN, headers=H)
    assert r.status_code == 409 and "cannot rank an item added since" in r.text
    assert client.get("/items/i99").status_code == 404
    assert client.app.state.lmrec.store.items() == []  # nothing was stored


def test_textseq_reads_new_items_and_queries(bundles, tmp_path):
    client = TestClient(create_app(bundles["textseq"], tmp_path / "e.sqlite", api_key=KEY))
    plain = client.post("/recommend", json={"history": ["i2", "i4"], "k": 14}).json()["items"]
    asked = client.post("/recommend", json={"history": ["i2", "i4"], "k": 14, "query": "odd gadget"}).json()["items"]
    assert len(plain) == len(asked) == 14 and [x["score"] for x in plain] != [x["score"] for x in asked]
    assert client.post("/items", json=NEW_EVEN, headers=H).status_code == 200
    scores = {x["id"]: x["score"] for x in client.post("/recommend", json={"history": ["i2"], "k": 17}).json()["items"]}
    assert "i99" in scores and np.isfinite(scores["i99"])


def test_workers_sharing_a_store_answer_alike(bundles, tmp_path):
    """Two apps on one store stand for two worker processes: what one commits, the other answers with."""
    store = tmp_path / "shared.sqlite"
    a = TestClient(create_app(bundles["lmcontent"], store, api_key=KEY))
    b = TestClient(create_app(bundles["lmcontent"], store, api_key=KEY))
    a.post("/events", json={"events": [{"user": "fresh", "item": "i5"}, {"user": "u2", "item": "i1"}]}, headers=H)
    for body in ({"user_id": "fresh", "k": 5}, {"user_id": "u2", "k": 5}):
        assert ranked(a, body) == ranked(b, body)
    assert b.post("/items", json=NEW_EVEN, headers=H).status_code == 200
    assert a.get("/items/i99").status_code == 200
    assert ranked(a, {"user_id": "u2", "k": 17}) == ranked(b, {"user_id": "u2", "k": 17})
    # a reload in one worker: the other follows on its next request
    assert a.post("/admin/reload", json={"bundle": "textseq"}, headers=H).status_code == 200
    assert b.get("/ready").json()["model"] == "textseq" == a.get("/ready").json()["model"]
    assert ranked(a, {"user_id": "u2", "k": 17}) == ranked(b, {"user_id": "u2", "k": 17})
    assert "i99" in ranked(b, {"user_id": "u2", "k": 17})  # the stored item, encoded by the new model too


def test_reload_refuses_what_is_not_a_bundle_beside(bundles, tmp_path):
    client = TestClient(create_app(bundles["lmcontent"], tmp_path / "e.sqlite", api_key=KEY))
    assert client.post("/admin/reload", json={"bundle": "nothing-here"}, headers=H).status_code == 404
    assert client.post("/admin/reload", json={"bundle": "../etc"}, headers=H).status_code == 422
    assert client.post("/admin/reload", json={"bundle": "textseq"}).status_code == 401
    assert client.get("/ready").json()["model"] == "lmcontent"
