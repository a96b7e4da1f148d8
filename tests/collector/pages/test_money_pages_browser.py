"""The payouts page and a payout's page in real headless Chromium against a served
collector, on a desktop and a phone: reached from the dashboard with the browser's password,
they show one payout with its units and its payments, without a console error, and are no
wider than the screen. Screenshots are left in ``artifacts/``.

SQLite only, as the dashboard's browser tests: test_money_pages.py runs the pages on both
databases."""

import pytest
from playwright.sync_api import expect

from tests.chromium import ARTIFACTS, watched
from tests.collector.pages.test_dashboard_browser import SCREENS, fits
from tests.collector.pages.test_money_pages import TX, recorded
from tests.conftest import OPERATOR_TOKEN
from tests.factories import CREATOR, new_wallet

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]


@pytest.mark.parametrize(("screen", "settings"), SCREENS, ids=[s[0] for s in SCREENS])
def test_the_payouts_pages_show_a_payout_and_fit_the_screen(
    serve_collector, dbconn, browser, screen, settings
):
    served = serve_collector()
    other = new_wallet()
    payout = recorded("2026-10", tx_hash=TX, shares=[(CREATOR, "600000"), (other, "400000")])
    context = browser.new_context(
        **settings, http_credentials={"username": "operator", "password": OPERATOR_TOKEN}
    )
    page = context.new_page()
    problems = watched(page)
    page.goto(served.url + "/")
    page.get_by_role("link", name="Payouts").click()
    expect(page).to_have_url(served.url + "/dashboard/payouts")
    row = page.locator(f'tr[data-payout="{payout.id}"]')
    expect(row.locator('[data-field="period"]')).to_have_text("2026-10")
    expect(row.locator('[data-field="basis"]')).to_have_text("uptime, weighed in milliseconds")
    expect(row.locator('[data-field="budget"]')).to_have_text("1000000")
    expect(row.locator('[data-field="payment-count"]')).to_have_text("2")
    expect(row.locator('[data-field="tx"] code')).to_have_attribute("title", TX)
    expect(row).to_contain_text("2026-10-01 00:00:00 UTC")
    fits(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"payouts-{screen}.png", full_page=True)

    row.locator('[data-field="period"]').click()
    expect(page.locator("#payout-title")).to_have_text("Payout for 2026-10")
    expect(page.locator('#payout [data-field="tx"]')).to_have_text(TX)
    payments = page.locator("#payments tbody tr")
    expect(payments).to_have_count(2)
    mine = page.locator(f'tr[data-wallet="{CREATOR}"]')
    expect(mine.locator('[data-field="amount"]')).to_have_text("600000")
    expect(mine.locator('[data-field="receipt-count"]')).to_have_text("7")
    expect(page.locator(f'tr[data-wallet="{other}"] [data-field="amount"]')).to_have_text("400000")
    fits(page)
    page.screenshot(path=ARTIFACTS / f"payout-{screen}.png", full_page=True)

    page.get_by_role("link", name="Payments").click()
    expect(page.locator("#payments tbody tr")).to_have_count(2)
    fits(page)
    assert problems == []
    context.close()
