"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against a served
collector: it loads without a console error, shows what the test created, follows a
heartbeat without a reload, fits a phone, and reads the same on a desktop and a phone: the
states' legend, a degraded worker not paid, who is down first, and with no workers the
install line. Screenshots are left in ``artifacts/``.

SQLite only: what the page reads is the same on both databases, and test_dashboard.py runs
it on both; a browser per database would double the slowest part for nothing more."""

import httpx
import pytest
from playwright.sync_api import expect

from collector.uptime.states import MEANING, STATES
from protocol.times import utcnow
from tests.chromium import ARTIFACTS, watched
from tests.factories import FakeWorker, deployment, minutes_ago

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

API_TOKEN = "b" * 32
# (name, the browser context's settings): a desktop and a phone.
SCREENS = [
    ("desktop", {"viewport": {"width": 1280, "height": 900}}),
    ("phone", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}),
]


def enrolled(url: str, beat: bool) -> FakeWorker:
    worker = FakeWorker()
    assert worker.enroll_at(url).status_code == 201
    if beat:
        beats(url, worker)
    return worker


def beats(url: str, worker: FakeWorker, ts=None, **extra) -> None:
    containers = [{"containerName": "shop-web", "port": "0.0.0.0:3000->3000/tcp"}]
    body = worker.heartbeat_body(ts, containers=containers, hostname="rig-7", **extra)
    raw, headers = worker.signed(body)
    assert httpx.post(url + "/heartbeat", content=raw, headers=headers).status_code == 200


def fits(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the screen"


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
    expect(row.locator('[data-field="state"]')).to_have_text("never seen — not paid")
    # Not paid, so listed before the worker that is up.
    expect(page.locator("li.worker").first).to_have_attribute("data-wallet", newcomer.wallet)
    expect(page.locator('#state-counts [data-state="up"] b')).to_have_text("1")
    expect(page.locator('#state-counts [data-state="never_seen"] b')).to_have_text("1")
    expect(page.locator("#deployments")).to_contain_text("shop")
    expect(page.locator('[data-status="processing"] b')).to_have_text("1")
    expect(page.locator('[data-status="pending"] b')).to_have_text("1")
    page.evaluate("window.notReloaded = true")

    beats(served.url, newcomer)
    expect(row.locator('[data-field="state"]')).to_have_text("up", timeout=15_000)
    expect(page.locator('#state-counts [data-state="up"] b')).to_have_text("2")
    expect(page.locator('#state-counts [data-state="never_seen"] b')).to_have_text("0")
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


@pytest.mark.parametrize(("screen", "settings"), SCREENS, ids=[name for name, _ in SCREENS])
def test_the_page_says_each_workers_state_down_first(serve_collector, browser, screen, settings):
    served = serve_collector()
    up, degraded, down = (enrolled(served.url, beat=False) for _ in range(3))
    beats(served.url, up)
    beats(served.url, degraded, agent={"dockerAvailable": False})
    beats(served.url, down, minutes_ago(60, utcnow()))  # the gap is 30 minutes
    context = browser.new_context(**settings)
    page = context.new_page()
    problems = watched(page)
    page.goto(served.url + "/")

    # The legend: the five states, each with what it means.
    legend = page.locator("#states-legend")
    expect(legend.locator("dt")).to_have_text([s.replace("_", " ") for s in STATES])
    expect(legend.locator("dd")).to_have_text([MEANING[s] for s in STATES])
    expect(legend.locator("dd").nth(STATES.index("degraded"))).to_be_visible()
    # Down first, with since when; then degraded, not paid; the worker up last.
    rows = page.locator("li.worker")
    expect(rows).to_have_count(3)
    order = [rows.nth(i).get_attribute("data-wallet") for i in range(3)]
    assert order == [down.wallet, degraded.wallet, up.wallet]
    expect(rows.nth(0).locator('[data-field="state"]')).to_have_text("down — not paid")
    expect(rows.nth(0).locator('[data-field="since"]')).to_contain_text("since 20")
    badge = rows.nth(1).locator('[data-field="state"]')
    expect(badge).to_have_text("degraded — Docker unavailable, not paid")
    expect(badge).to_be_visible()
    expect(rows.nth(2).locator('[data-field="state"]')).to_have_text("up")
    expect(rows.nth(2).locator('[data-field="credits"]')).to_contain_text(" credits")
    expect(rows.nth(2).locator('[data-field="axis"]').first).to_contain_text(" UTC")
    counts = page.locator("#state-counts")
    for state, n in {"up": 1, "late": 0, "degraded": 1, "down": 1, "never_seen": 0}.items():
        expect(counts.locator(f'[data-state="{state}"] b')).to_have_text(str(n))
    fits(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"dashboard-states-{screen}.png", full_page=True)
    assert problems == []
    context.close()


@pytest.mark.parametrize(("screen", "settings"), SCREENS, ids=[name for name, _ in SCREENS])
def test_an_empty_fleet_shows_the_install_line(serve_collector, browser, screen, settings):
    served = serve_collector()
    context = browser.new_context(**settings)
    page = context.new_page()
    problems = watched(page)
    page.goto(served.url + "/")
    line = page.locator("#install-line")
    expect(line).to_be_visible()
    expect(line).to_have_text(f"curl -fsSL '{served.url}/setup.sh?wallet=0x…' | sh")
    expect(page.locator("#empty")).to_contain_text("in place of 0x…")
    expect(page.locator("li.worker")).to_have_count(0)
    # The line is the collector's own: the script it names is served.
    script = httpx.get(served.url + "/setup.sh", params={"wallet": FakeWorker().wallet})
    assert script.status_code == 200 and "X-Tassium-Refused" not in script.headers
    fits(page)  # a long line scrolls in its box, not the page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"dashboard-empty-{screen}.png", full_page=True)
    assert problems == []
    context.close()
