"""The operator's money pages through the Flask client: the payouts page, a payout's page
with its payments, the payments page and its wallet filter; who may see them (the operator
only, by token or a browser's password), escaping, paging and the empty states.
tests/collector/pages/test_money_pages_browser.py reads them in a real browser."""

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from collector.pages.money_pages import PAGE_SIZE, RECORD_LINE
from collector.store.models import Payment, Payout
from tests.conftest import OPERATOR_TOKEN
from tests.factories import CREATOR, new_wallet

START = datetime(2026, 10, 1, tzinfo=UTC)
TX = "ab" * 32


def recorded(period: str = "2026-10", *, shares=(), start=START, **fields) -> Payout:
    """A payout as payouts.record() writes it: the payout, and a payment per share."""
    payout = Payout.create(
        period=period,
        period_start=start,
        period_end=start + timedelta(days=31),
        basis=fields.pop("basis", "uptime"),
        budget=fields.pop("budget", "1000000"),
        inputs_sha256=fields.pop("inputs_sha256", "1" * 64),
        export_sha256=fields.pop("export_sha256", "2" * 64),
        created_at=fields.pop("created_at", start + timedelta(days=33)),
        **fields,
    )
    for wallet, amount in shares:
        Payment.create(
            name=f"payout {period}",
            amount=amount,
            creator=wallet,
            payout=payout.id,
            tx_hash=payout.tx_hash,
            receipts_root="c" * 64,
            receipt_count=7,
        )
    return payout


def rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)


def basic(password: str) -> dict:
    token = base64.b64encode(f"operator:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


PAGES = ["/dashboard/payouts", "/dashboard/payments", "/dashboard/payouts/1"]


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_browser_is_asked_for_the_token(client, dbconn, path):
    recorded()
    answer = client.get(path)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="Tassium"'
    assert "1000000" not in answer.text


@pytest.mark.parametrize("path", PAGES)
def test_the_operator_sees_the_pages_by_token_or_browser_password(client, operator, dbconn, path):
    recorded()
    assert operator.get(path).status_code == 200
    by_browser = client.get(path, headers=basic(OPERATOR_TOKEN))
    assert by_browser.status_code == 200 and by_browser.mimetype == "text/html"
    wrong = client.get(path, headers=basic("not-the-token-at-all"))
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers


def test_without_an_api_token_the_pages_are_closed(make_app, dbconn):
    page = make_app(api_token=None).test_client().get("/dashboard/payouts")
    assert page.status_code == 403
    assert "tassium-collector" in page.json["error"]


def test_the_pages_are_linked_from_the_dashboard_and_each_other(client, operator):
    dashboard = client.get("/").text
    assert 'href="/dashboard/payouts"' in dashboard and 'href="/dashboard/payments"' in dashboard
    page = operator.get("/dashboard/payments").text
    assert 'href="/"' in page and 'href="/dashboard/payouts"' in page


def test_the_payouts_page_lists_each_payout_with_units_and_hashes(operator, dbconn):
    unpaid = recorded("2026-10", shares=[(CREATOR, "600000"), (new_wallet(), "400000")])
    paid = recorded(
        "2026-09",
        start=START - timedelta(days=30),
        basis="credits",
        tx_hash=TX,
        created_at=START + timedelta(days=40),
        shares=[(CREATOR, "5")],
    )
    page = operator.get("/dashboard/payouts")
    assert page.status_code == 200
    html = page.text
    # Newest recorded first.
    assert rows(html, "data-payout") == [str(paid.id), str(unpaid.id)]
    assert "credits, weighed in thousandths of a credit" in html
    assert "uptime, weighed in milliseconds" in html
    assert re.search(r'data-field="payment-count">2<', html)
    assert "not paid yet" in html
    # Hashes shortened, the whole value in the title.
    assert f'title="{TX}"' in html and f"{TX[:10]}…{TX[-6:]}" in html
    assert f'title="{"1" * 64}"' in html
    assert "2026-10-01 00:00:00 UTC" in html and "2026-11-01 00:00:00 UTC" in html
    assert f'href="/dashboard/payouts/{unpaid.id}"' in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]


def test_a_payouts_page_shows_its_payments(operator, dbconn):
    other = new_wallet()
    payout = recorded(shares=[(other, "400000"), (CREATOR, "600000")], tx_hash=TX)
    page = operator.get(f"/dashboard/payouts/{payout.id}")
    assert page.status_code == 200
    html = page.text
    # By wallet, as GET /payouts/{period} lists them.
    assert rows(html, "data-wallet") == sorted([other, CREATOR])
    assert "600000" in html and "400000" in html
    assert re.search(r'data-field="receipt-count">7<', html)
    assert f'title="{"c" * 64}"' in html
    assert TX in html  # in full on its own page
    missing = operator.get("/dashboard/payouts/99999")
    assert missing.status_code == 404 and missing.json["error"] == "no payout with id 99999"


def test_the_payments_page_lists_payments_newest_first_with_their_payout(operator, dbconn):
    payout = recorded(shares=[(CREATOR, "600000")])
    made = operator.post("/payments", json={"name": "hosting", "amount": "42", "creator": CREATOR})
    assert made.status_code == 201
    html = operator.get("/dashboard/payments").text
    assert rows(html, "data-payment") == [str(made.json["id"]), str(Payment.get().id)]
    assert "hosting" in html and CREATOR in html
    assert f'<a href="/dashboard/payouts/{payout.id}">2026-10</a>' in html
    assert "not paid yet" in html


def test_the_wallet_filter_narrows_the_payments(operator, dbconn):
    other = new_wallet()
    recorded(shares=[(CREATOR, "600000"), (other, "400000")])
    html = operator.get("/dashboard/payments", query_string={"wallet": other}).text
    assert len(rows(html, "data-payment")) == 1 and "400000" in html and "600000" not in html
    nobody = operator.get("/dashboard/payments", query_string={"wallet": new_wallet()}).text
    assert rows(nobody, "data-payment") == []
    assert "No payments to or by this wallet." in nobody


def test_a_malformed_wallet_is_a_sentence_and_shows_nothing(operator, dbconn):
    recorded(shares=[(CREATOR, "600000")])
    page = operator.get("/dashboard/payments", query_string={"wallet": "<b>nope</b>"})
    assert page.status_code == 400
    assert 'role="alert">wallet: ' in page.text
    assert rows(page.text, "data-payment") == []
    assert "<b>nope</b>" not in page.text and "&lt;b&gt;nope&lt;/b&gt;" in page.text


def test_a_bad_offset_is_a_sentence(operator):
    page = operator.get("/dashboard/payouts", query_string={"offset": "x"})
    assert page.status_code == 400 and "must be a whole number" in page.text


def test_names_from_users_are_escaped(operator, dbconn):
    Payment.create(name='<script>alert("x")</script>', amount="1", creator=CREATOR)
    recorded("<i>2026-10</i>")
    payments = operator.get("/dashboard/payments").text
    assert "<script>alert" not in payments and "&lt;script&gt;alert" in payments
    payouts = operator.get("/dashboard/payouts").text
    assert "<i>2026-10</i>" not in payouts and "&lt;i&gt;2026-10&lt;/i&gt;" in payouts


def test_the_lists_are_paged(operator, dbconn):
    for n in range(PAGE_SIZE + 3):
        recorded(f"p{n:03}", start=START + timedelta(days=31 * n), created_at=START + timedelta(n))
    first = operator.get("/dashboard/payouts").text
    assert len(rows(first, "data-payout")) == PAGE_SIZE
    assert f"1–{PAGE_SIZE} of {PAGE_SIZE + 3} payouts" in first
    found = re.search(r'href="([^"]+)" rel="next"', first)
    assert found and 'rel="prev"' not in first
    second = operator.get(found[1].replace("&amp;", "&")).text
    assert len(rows(second, "data-payout")) == 3 and 'rel="next"' not in second
    assert set(rows(first, "data-payout")).isdisjoint(rows(second, "data-payout"))
    assert 'href="/dashboard/payouts" rel="prev"' in second


def test_a_payouts_payments_are_paged(operator, dbconn):
    payout = recorded(shares=[(new_wallet(), "1") for _ in range(PAGE_SIZE + 1)])
    first = operator.get(f"/dashboard/payouts/{payout.id}").text
    assert len(rows(first, "data-wallet")) == PAGE_SIZE
    second = operator.get(f"/dashboard/payouts/{payout.id}?offset={PAGE_SIZE}").text
    assert len(rows(second, "data-wallet")) == 1


def test_with_none_recorded_the_pages_say_how_to_make_one(operator):
    for path in ("/dashboard/payouts", "/dashboard/payments"):
        html = operator.get(path).text
        assert f'<code id="record-line">{RECORD_LINE}</code>' in html
