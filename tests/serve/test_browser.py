"""The web page and the dashboard in a real browser (Playwright driving Debian's chromium): pick a user, ask
in words, click a result, open "why", add an item, see the dashboard; no console errors. Screenshots are
saved in the test's tmp folder (``bench/screenshots.py`` makes the ones in docs/images)."""

import os
import shutil
import signal
import sqlite3

import pytest

from tests.serve.test_durability import KEY, free_port, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browser_path():
    """Debian's chromium; skip where there is none, unless LMREC_REQUIRE_BROWSER=1 (CI) makes that a failure."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    else:
        reason = "" if CHROMIUM else "no chromium on this machine (apt-get install chromium)"
    if reason:
        if os.environ.get("LMREC_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.mark.slow
def test_the_page_and_the_dashboard_in_a_browser(bundles, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    executable = browser_path()
    port, store = free_port(), tmp_path / "events.sqlite"
    server = start(bundles["lmcontent"], store, port)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/#key={KEY}")  # the key in the fragment: never sent to the server
            expect(page.locator("#status")).to_contain_text("pick a user")
            expect(page.locator("#wish-form")).to_be_visible()  # a text model: wishes and new items

            page.fill("#user", "u2")
            page.click("#user-form button[type=submit]")
            rows = page.locator("#recommendations li[data-item]")
            expect(page.locator("#history li").first).to_contain_text("gadget even")
            expect(rows.first).to_contain_text("gadget even")  # an even user gets even items first

            page.click("#anonymous")  # a new visitor: nothing known yet, so ask in words
            expect(page.locator("#recommendations li.muted")).to_contain_text("type a wish")
            page.fill("#wish", "odd gadget")
            page.click("#wish-form button[type=submit]")
            expect(rows.first).to_contain_text("gadget odd")
            offered = rows.evaluate_all("rows => rows.map(r => r.dataset.item)")
            assert all(int(i[1:]) % 2 == 1 for i in offered[:8])  # the wish ranks the odd items first

            clicked = offered[0]
            rows.first.locator("button[data-action=view]").click()
            expect(page.locator("#status")).to_contain_text(f"view {clicked}")
            expect(page.locator("#history li").first).to_contain_text(f"model {clicked[1:]}")
            page.wait_for_function("c => ![...document.querySelectorAll('#recommendations li[data-item]')]"
                                   ".some(r => r.dataset.item === c)", arg=clicked)
            assert rows.evaluate_all("rows => rows.map(r => r.dataset.item)") != offered  # the list changed at once
            visitor = page.input_value("#user")
            assert visitor.startswith("visitor-")
            stored = sqlite3.connect(store).execute("SELECT user, item, type FROM events").fetchall()
            assert stored == [(visitor, clicked, "view")]

            rows.first.locator("button[data-action=why]").click()
            why = page.locator(".why").first
            expect(why).to_contain_text("exact")
            expect(why).to_contain_text("words:")
            expect(why).to_contain_text("matched in")

            page.fill("#item-id", "i99")
            page.fill("#item-title", "gadget odd model 99")
            page.click("#item-form button[type=submit]")
            expect(page.locator("#status")).to_contain_text("added i99: 17 items")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            page.goto(f"http://127.0.0.1:{port}/dashboard")
            expect(page.locator("#online tr").nth(1)).to_contain_text("lmcontent")
            expect(page.locator("#totals")).to_contain_text("1 events")
            assert page.locator("#events-chart rect").count() == 60
            expect(page.locator("#hourly tr").nth(1)).to_contain_text("A")  # the online metrics over time
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert errors == []
    assert (tmp_path / "page.png").stat().st_size > 10_000 and (tmp_path / "dashboard.png").stat().st_size > 5_000
