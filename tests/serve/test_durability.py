"""A real server process killed with SIGKILL in the middle of a stream of events (and during a swap to a
refit bundle) loses no acknowledged event, stores none twice, and after a restart answers as a fresh process
computes from the store; no request fails during the swap."""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest

from lmrec import pipeline
from lmrec.bundle import Bundle
from lmrec.serve.state import Service, ServiceState
from lmrec.serve.store import EventStore

KEY = "d" * 24
USERS = ["d0", "d1", "d2"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle, store, port, *options):
    proc = subprocess.Popen([sys.executable, "-m", "lmrec.cli", "serve", str(bundle), "--port", str(port),
                             "--store", str(store), *options], env={**os.environ, "LMREC_API_KEY": KEY},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not become ready")


def assert_answers_as_a_fresh_process(port, acked, fresh):
    """Each user's history holds their acknowledged events once, in order (plus at most the one in flight at
    the kill), and `/recommend` answers what ``fresh`` (a state built from the store) computes."""
    for user in USERS:
        history = httpx.get(f"http://127.0.0.1:{port}/users/{user}", params={"limit": 1000}).json()["history"]
        stored_order = [h["id"] for h in reversed(history)]
        mine = [item for u, item, _ in acked if u == user]
        assert stored_order[:len(mine)] == mine and len(stored_order) <= len(mine) + 1
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": user, "k": 5}).json()["items"]
        assert [(r["id"], r["score"]) for r in answer] == [(r.item, r.score) for r in fresh.recommend(user, k=5)]


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_event(bundles, tmp_path):
    store, port = tmp_path / "events.sqlite", free_port()
    server = start(bundles["itemknn"], store, port)
    acked: list[tuple[str, str, str]] = []
    stop = threading.Event()

    def send():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=5) as client:
            n = 0
            while not stop.is_set():
                user, item, eid = USERS[n % 3], f"i{(2 * n + 1) % 16}", f"e{n}"
                try:
                    r = client.post("/events", json={"events": [{"user": user, "item": item, "id": eid}]})
                except httpx.HTTPError:
                    return  # the server is gone: this event was not acknowledged
                if r.status_code == 200:
                    acked.append((user, item, eid))
                n += 1

    sender = threading.Thread(target=send)
    sender.start()
    while len(acked) < 60:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was committed survives
    server.wait()
    stop.set()
    sender.join()

    counts = dict(sqlite3.connect(store).execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall())
    assert all(counts.get(eid) == 1 for _, _, eid in acked)  # every acknowledged event, once
    assert len(counts) <= len(acked) + 1  # at most the one request in flight at the kill

    server = start(bundles["itemknn"], store, port)
    try:
        assert_answers_as_a_fresh_process(port, acked, ServiceState(Bundle.load(bundles["itemknn"]), EventStore(store)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


class Traffic:
    """Events for USERS in a loop (each with an id) and recommendations for a known user, from two threads;
    records what was acknowledged and every answer that was not a 200 while the server was up."""

    def __init__(self, port):
        self.base, self.acked, self.failed = f"http://127.0.0.1:{port}", [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._events), threading.Thread(target=self._reads)]
        for t in self.threads:
            t.start()

    def _events(self):
        with httpx.Client(base_url=self.base, headers={"X-API-Key": KEY}, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                user, item, eid = USERS[n % 3], f"i{(2 * n + 1) % 16}", f"e{n}"
                try:
                    r = client.post("/events", json={"events": [{"user": user, "item": item, "id": eid}]})
                except httpx.HTTPError:
                    return  # the server is gone: this event was not acknowledged
                (self.acked.append((user, item, eid)) if r.status_code == 200 else self.failed.append(r.text))
                n += 1

    def _reads(self):
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/recommend", json={"user_id": "u1", "k": 5})
                except httpx.HTTPError:
                    return
                if r.status_code != 200:
                    self.failed.append(r.text)

    def wait_for(self, n):
        deadline = time.time() + 120
        while len(self.acked) < n and time.time() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= n, "the event stream stalled"

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join()


@pytest.mark.slow
def test_a_swap_to_a_refit_bundle_mid_stream_fails_nothing_and_loses_nothing(bundles, tmp_path):
    served, store, port = tmp_path / "live", tmp_path / "live.events.sqlite", free_port()
    shutil.copytree(bundles["sasrec"], served)
    server = start(served, store, port)
    traffic = Traffic(port)
    traffic.wait_for(40)
    # refit from the store while it is written to, then swap the running service to the new bundle
    pipeline.refit(served, store, tmp_path / "next", {"epochs": 1})
    r = httpx.post(f"http://127.0.0.1:{port}/admin/reload", json={"bundle": "next"}, headers={"X-API-Key": KEY},
                   timeout=60)
    assert r.status_code == 200 and r.json()["bundle"] == "next", r.text
    traffic.wait_for(len(traffic.acked) + 40)
    server.send_signal(signal.SIGKILL)
    server.wait()
    traffic.end()
    assert traffic.failed == []  # not one request failed before the kill, the swap included

    counts = dict(sqlite3.connect(store).execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall())
    assert all(counts.get(eid) == 1 for _, _, eid in traffic.acked)
    server = start(tmp_path / "next", store, port)
    try:
        # the refit bundle holds the first events, the store the rest: each counted once, in order
        assert_answers_as_a_fresh_process(port, traffic.acked, Service(tmp_path / "next", EventStore(store)).state)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_workers_answer_alike_whichever_gets_the_request(bundles, tmp_path):
    port = free_port()
    server = start(bundles["sasrec"], tmp_path / "w.sqlite", port, "--workers", "2")
    try:
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/events", json={"events": [{"user": "w-new", "item": "i3"}, {"user": "w-new", "item": "i5"}]},
                       headers={"X-API-Key": KEY})
        assert r.status_code == 200
        answers = set()
        for _ in range(30):  # a new connection each time: the kernel spreads them over the workers
            with httpx.Client(base_url=base) as client:
                got = client.post("/recommend", json={"user_id": "w-new", "k": 5})
                assert got.status_code == 200, got.text
                answers.add(tuple((x["id"], x["score"]) for x in got.json()["items"]))
        assert len(answers) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
