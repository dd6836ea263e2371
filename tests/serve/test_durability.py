"""A real server process killed with SIGKILL in the middle of a stream of events loses no acknowledged
event, stores none twice, and after a restart answers as a fresh process computes from the store."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest

from lmrec.bundle import Bundle
from lmrec.serve.state import ServiceState
from lmrec.serve.store import EventStore

KEY = "d" * 24
USERS = ["d0", "d1", "d2"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle, store, port):
    proc = subprocess.Popen([sys.executable, "-m", "lmrec.cli", "serve", str(bundle), "--port", str(port),
                             "--store", str(store)], env={**os.environ, "LMREC_API_KEY": KEY},
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
        fresh = ServiceState(Bundle.load(bundles["itemknn"]), EventStore(store))
        for user in USERS:
            history = httpx.get(f"http://127.0.0.1:{port}/users/{user}", params={"limit": 1000}).json()["history"]
            stored_order = [h["id"] for h in reversed(history)]
            mine = [item for u, item, _ in acked if u == user]
            assert stored_order[:len(mine)] == mine and len(stored_order) <= len(mine) + 1
            answer = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": user, "k": 5}).json()["items"]
            assert [(r["id"], r["score"]) for r in answer] == [(r.item, r.score) for r in fresh.recommend(user, k=5)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
