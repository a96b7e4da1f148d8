"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against a served
collector: it loads without a console error, shows what the test created, follows a
heartbeat without a reload, and fits a phone. Screenshots are left in ``artifacts/``.

SQLite only: what the page reads is the same on both databases, and test_dashboard.py runs
it on both; a browser per database would double the slowest part for nothing more."""

import httpx
import pytest
from playwright.sync_api import expect

from tests.chromium import ARTIFACTS, watched
from tests.factories import FakeWorker, deployment

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

API_TOKEN = "b" * 32


def enrolled(url: str, beat: bool) -> FakeWorker:
    worker = FakeWorker()
    assert worker.enroll_at(url).status_code == 201
    if beat:
        beats(url, worker)
    return worker


def beats(url: str, worker: FakeWorker) -> None:
    containers = [{"containerName": "shop-web", "port": "0.0.0.0:3000->3000/tcp"}]
    raw, headers = worker.signed(worker.heartbeat_body(containers=containers, hostname="rig-7"))
    assert httpx.post(url + "/heartbeat", content=raw, headers=headers).status_code == 200


def test_the_dashboard_follows_a_heartbeat_without_a_reload(serve_collector, browser):
    # A private dashboard, as an operator would run it: the browser logs in with HTTP Basic.
    served = serve_collector(api_token=API_TOKEN, private_pages=True, dashboard_refresh=1)
    steady, newcomer = enrolled(served.url, beat=True), enrolled(served.url, beat=False)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    for name in ("shop", "blog"):
        created = httpx.post(served.url + "/deployments", json=deployment(name=name), headers=auth)
        assert created.status_code == 201
    moved = httpx.patch(
        served.url + "/deployments/blog/status", json={"status": "processing"}, headers=auth
    )
    assert moved.status_code == 200

    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        http_credentials={"username": "operator", "password": API_TOKEN},
    )
    page = context.new_page()
    problems = watched(page)
    page.goto(served.url + "/")
    row = page.locator(f'li.worker[data-wallet="{newcomer.wallet}"]')
    expect(page.locator(f'li.worker[data-wallet="{steady.wallet}"] .host')).to_have_text("rig-7")
    expect(row.locator('[data-field="online"]')).to_have_text("offline")
    expect(page.locator("#online-count")).to_have_text("1")
    expect(page.locator("#deployments")).to_contain_text("shop")
    expect(page.locator('[data-status="processing"] b')).to_have_text("1")
    expect(page.locator('[data-status="pending"] b')).to_have_text("1")
    page.evaluate("window.notReloaded = true")

    beats(served.url, newcomer)
    expect(row.locator('[data-field="online"]')).to_have_text("online", timeout=15_000)
    expect(row.locator('[data-field="status"]')).to_have_text("HEALTHY")
    expect(page.locator("#online-count")).to_have_text("2")
    expect(row.locator(".host")).to_have_text("rig-7")
    assert page.evaluate("window.notReloaded") is True

    # Hovering a segment of the bar shows what it covers.
    segment = row.locator(".bar").first.locator(".seg").last
    segment.hover()
    expect(row.locator(".detail")).to_contain_text("UTC:")
    # ... and keeps showing it, from the fresh data, across the next refresh.
    expect(page.locator("#asof")).not_to_have_text(page.locator("#asof").inner_text())
    expect(row.locator(".detail")).to_contain_text("UTC:")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    assert problems == []
    context.close()


def test_the_dashboard_fits_a_phone(serve_collector, browser):
    served = serve_collector()
    worker = enrolled(served.url, beat=True)
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = watched(page)
    page.goto(served.url + "/")
    row = page.locator(f'li.worker[data-wallet="{worker.wallet}"]')
    expect(row).to_be_visible()
    row.locator("details summary").tap()
    expect(row.locator("table")).to_contain_text("shop-web")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    # A tap on a segment, where there is no hover, shows its uptime too.
    row.locator(".bar").last.locator(".seg").last.tap()
    expect(row.locator(".detail")).to_contain_text("UTC:")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
    assert problems == []
    context.close()
