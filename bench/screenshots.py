"""Screenshots of the web page and the dashboard for docs/images (Playwright + Debian's chromium).

Usage: python bench/screenshots.py runs/beauty-lmcontent

Serves the bundle on 127.0.0.1 with a fresh store, shows a known user, asks a new visitor's wish, records a
view, opens "why", then the dashboard; writes docs/images/page.png and docs/images/dashboard.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
KEY = "screenshots-" + "k" * 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--user", default="1")
    ap.add_argument("--wish", default="red lipstick, not matte")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen([sys.executable, "-m", "lmrec.cli", "serve", str(args.bundle), "--port", str(port),
                                   "--store", str(Path(scratch) / "events.sqlite")],
                                  env={**os.environ, "LMREC_API_KEY": KEY})
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/#key={KEY}")
                expect(page.locator("#status")).to_contain_text("pick a user")
                page.fill("#user", args.user)
                page.click("#user-form button[type=submit]")
                rows = page.locator("#recommendations li[data-item]")
                expect(rows.first).to_be_visible()
                page.fill("#wish", args.wish)
                page.click("#wish-form button[type=submit]")
                page.wait_for_load_state("networkidle")  # the wish's list, not the one before it
                rows.nth(1).locator("button[data-action=view]").click()
                expect(page.locator("#status")).to_contain_text("recorded")
                page.wait_for_load_state("networkidle")
                rows.first.locator("button[data-action=why]").click()
                expect(page.locator(".why").first).to_be_visible()
                page.screenshot(path=str(OUT / "page.png"), full_page=True)
                page.goto(f"http://127.0.0.1:{port}/dashboard")
                expect(page.locator("#online tr").nth(1)).to_be_visible()
                page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
                browser.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(f"wrote {OUT / 'page.png'} and {OUT / 'dashboard.png'}")


if __name__ == "__main__":
    main()
