"""The service in-process (FastAPI's TestClient): answers, validation, keys, the feedback loop, concurrency."""

import threading

import pytest
from fastapi.testclient import TestClient

from lmrec.bundle import Bundle
from lmrec.serve.app import create_app
from lmrec.serve.state import ServiceState
from lmrec.serve.store import EventStore

KEY = "k" * 24


@pytest.fixture
def client(bundles, tmp_path):
    return TestClient(create_app(bundles["itemknn"], tmp_path / "events.sqlite", api_key=KEY))


def parity(ids):
    return {int(i[1:]) % 2 for i in ids}


def test_health_ready_and_the_schema(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["model"] == "itemknn" and ready["items"] == 16
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/events", "/users/{user_id}", "/items/{item_id}", "/items/{item_id}/similar"} <= set(paths)


def test_recommend_by_user_by_session_and_with_filters(client):
    # u2 has 6 of the 8 even items: the 2 left come first
    got = client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    assert got["model"] == "itemknn" and got["known_user"] is True and len(got["items"]) == 2
    assert parity([r["id"] for r in got["items"]]) == {0}  # an even user gets even items
    assert all(r["title"].startswith("gadget even") for r in got["items"])
    seen = {h["id"] for h in client.get("/users/u2").json()["history"]}
    assert not seen & {r["id"] for r in got["items"]}  # history excluded
    session = client.post("/recommend", json={"history": ["i1", "i3"], "k": 4}).json()
    assert parity([r["id"] for r in session["items"]]) == {1} and session["known_user"] is False
    filtered = client.post("/recommend", json={"history": ["i1"], "k": 16, "filters": {"kind": "even"}}).json()
    assert filtered["items"] and parity([r["id"] for r in filtered["items"]]) == {0}
    similar = client.get("/items/i4/similar", params={"k": 3}).json()["items"]
    assert "i4" not in {r["id"] for r in similar} and parity([r["id"] for r in similar]) == {0}
    assert client.get("/items/i5").json()["fields"] == {"name": "gadget odd model 5", "kind": "odd"}


@pytest.mark.parametrize("body,status,message", [
    ({"user_id": "nobody"}, 404, "unknown user 'nobody': send their events to POST /events first"),
    ({"history": ["i1", "zzz"]}, 404, "unknown item 'zzz'"),
    ({}, 422, "give a user_id, a history or a query"),
    ({"user_id": "u1", "k": 0}, 422, "greater than or equal to 1"),
    ({"user_id": "u1", "k": 10_001}, 422, "less than or equal to 1000"),
    ({"user_id": "u1", "kk": 3}, 422, "Extra inputs are not permitted"),
    ({"user_id": 7}, 422, "valid string"),
    ({"user_id": ""}, 422, "at least 1 character"),
    ({"history": ["i1"] * 1001}, 422, "at most 1000 items"),
    ({"user_id": "u1", "filters": {"colour": "red"}}, 422, "Input should be 'name' or 'kind'"),
    ({"user_id": "u1", "query": "   "}, 422, "should match pattern"),
    ({"query": "x" * 100_000}, 422, "at most 2000 characters"),
    ({"query": "odd gadgets"}, 409, "does not read text"),
])
def test_bad_requests_are_4xx_with_a_message(client, body, status, message):
    r = client.post("/recommend", json=body)
    assert r.status_code == status and message in r.text, r.text


def test_oversized_unlengthed_and_malformed_bodies(client):
    big = '{"user_id": "u1", "history": [' + ",".join(['"i1"'] * 300_000) + "]}"
    assert client.post("/recommend", content=big, headers={"content-type": "application/json"}).status_code == 413
    r = client.post("/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    chunked = client.post("/recommend", content=iter([b'{"user_id": "u1"}']),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 411
    assert client.get("/users/" + "x" * 300).status_code == 422
    assert client.get("/items/nothing").status_code == 404


def test_writes_need_the_key(bundles, tmp_path):
    event = {"events": [{"user": "u1", "item": "i3"}]}
    open_app = TestClient(create_app(bundles["itemknn"], tmp_path / "a.sqlite"))
    r = open_app.post("/events", json=event)
    assert r.status_code == 403 and "LMREC_API_KEY" in r.text
    keyed = TestClient(create_app(bundles["itemknn"], tmp_path / "b.sqlite", api_key=KEY))
    assert keyed.post("/events", json=event).status_code == 401
    assert keyed.post("/events", json=event, headers={"X-API-Key": "wrong"}).status_code == 403
    assert keyed.post("/events", json=event, headers={"X-API-Key": KEY}).status_code == 200
    private = TestClient(create_app(bundles["itemknn"], tmp_path / "c.sqlite", api_key=KEY, keyed_reads=True))
    assert private.post("/recommend", json={"user_id": "u1"}).status_code == 401
    assert private.post("/recommend", json={"user_id": "u1"}, headers={"X-API-Key": KEY}).status_code == 200


def test_an_event_changes_the_next_answer(client):
    h = {"X-API-Key": KEY}
    # a user the bundle never saw: answers from the first event on
    assert client.post("/recommend", json={"user_id": "newcomer"}).status_code == 404
    assert client.post("/events", json={"events": [{"user": "newcomer", "item": "i7"}]}, headers=h).status_code == 200
    first = client.post("/recommend", json={"user_id": "newcomer", "k": 3}).json()
    assert first["known_user"] is True and parity([r["id"] for r in first["items"]]) == {1}
    # a known user: the item they just took is not recommended again, and their history shows it first
    before = [r["id"] for r in client.post("/recommend", json={"user_id": "u2", "k": 2}).json()["items"]]
    client.post("/events", json={"events": [{"user": "u2", "item": before[0], "type": "purchase"}]}, headers=h)
    after = [r["id"] for r in client.post("/recommend", json={"user_id": "u2", "k": 2}).json()["items"]]
    assert before[0] not in after
    assert client.get("/users/u2").json()["history"][0]["id"] == before[0]
    # a dislike is stored but is no history
    client.post("/events", json={"events": [{"user": "u2", "item": "i1", "type": "dislike"}]}, headers=h)
    assert client.get("/users/u2").json()["history"][0]["id"] == before[0]


def test_a_sequence_model_reinfers_from_the_new_history(bundles, tmp_path):
    client = TestClient(create_app(bundles["sasrec"], tmp_path / "s.sqlite", api_key=KEY))
    before = client.post("/recommend", json={"user_id": "u3", "k": 16, "exclude_seen": False}).json()["items"]
    client.post("/events", json={"events": [{"user": "u3", "item": "i0"}, {"user": "u3", "item": "i2"}]},
                headers={"X-API-Key": KEY})
    after = client.post("/recommend", json={"user_id": "u3", "k": 16, "exclude_seen": False}).json()["items"]
    assert [r["score"] for r in before] != [r["score"] for r in after]


def test_a_retried_event_id_is_stored_once(client):
    h = {"X-API-Key": KEY}
    body = {"events": [{"user": "u1", "item": "i3", "id": "evt-1"}]}
    first = client.post("/events", json=body, headers=h).json()
    again = client.post("/events", json=body, headers=h).json()
    assert first["last_seq"] == again["last_seq"]
    store = client.app.state.lmrec.store
    assert [e.item for e in store.events(user="u1")] == ["i3"]


def test_concurrent_writers_for_one_user_lose_nothing(bundles, tmp_path):
    app = create_app(bundles["itemknn"], tmp_path / "c.sqlite", api_key=KEY)
    client = TestClient(app)
    errors = []

    def writer(w):
        for n in range(25):
            r = client.post("/events", json={"events": [{"user": "shared", "item": f"i{(w + n) % 16}",
                                                         "id": f"w{w}-{n}"}]}, headers={"X-API-Key": KEY})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = app.state.lmrec.state
    stored = list(state.store.events(user="shared"))
    assert len(stored) == 200 and [e.seq for e in stored] == sorted(e.seq for e in stored)
    # the live history is the stored order, the same as a fresh process rebuilds from the store
    fresh = ServiceState(Bundle.load(bundles["itemknn"]), EventStore(tmp_path / "c.sqlite"))
    assert state.history("shared").tolist() == fresh.history("shared").tolist()
    assert len(state.history("shared")) == 200
