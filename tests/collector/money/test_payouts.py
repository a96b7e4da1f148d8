"""collector/money/payouts.py: the exact split, the export an owner can check, and recording a
payout once per period, never over another's hours and never changed after, also from
several processes at once."""

import hashlib
import json
import random
from datetime import timedelta
from functools import partial

import pytest

from collector.money import payouts, units
from collector.money.payouts import split
from collector.money.reports import Period
from collector.store.models import Payment, Payout, WorkerMetric
from protocol.merkle import EMPTY_ROOT
from protocol.times import format_timestamp, utcnow
from tests.factories import at_once, connected

OCTOBER = "2026-10"
# Half of October and half of November: its hours overlap October's payout.
MID_OCTOBER = "2026-10-15T00:00:00Z/2026-11-15T00:00:00Z"
CREDITS = {"basis": "credits"}
UINT256_MAX = 2**256 - 1
HOUR = timedelta(hours=1)
TX = "0x" + "ab" * 32


# --- the split --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "weights", "shares"),
    [
        # 100/6 = 16 r 4, 200/6 = 33 r 2, 300/6 = 50 r 0: one unit left, to the remainder 4.
        (100, [("0xa", 1), ("0xb", 2), ("0xc", 3)], [17, 33, 50]),
        # Equal remainders: the lower wallet first.
        (10, [("0xc", 1), ("0xa", 1), ("0xb", 1)], [3, 4, 3]),
        (2, [("0xc", 1), ("0xa", 1), ("0xb", 1)], [0, 1, 1]),
        (0, [("0xa", 5), ("0xb", 7)], [0, 0]),
        (7, [("0xa", 1)], [7]),
        # uint256: no float anywhere.
        (UINT256_MAX, [("0xa", 1), ("0xb", 1)], [2**255, 2**255 - 1]),
    ],
)
def test_the_split_is_exact_on_hand_computed_cases(budget, weights, shares):
    assert split(budget, weights) == shares


def test_the_split_always_sums_to_the_budget_and_is_within_a_unit_of_proportional():
    rng = random.Random(11)
    for _ in range(300):
        weights = [(f"0x{i:02x}", rng.choice([0, 1, rng.randrange(10**12)])) for i in range(30)]
        if not any(w for _, w in weights):
            continue
        budget = rng.choice([rng.randrange(100), rng.randrange(UINT256_MAX)])
        shares = split(budget, weights)
        total = sum(w for _, w in weights)
        assert sum(shares) == budget
        for (_, weight), share in zip(weights, shares, strict=True):
            assert budget * weight // total <= share <= budget * weight // total + 1


def test_nothing_to_split_is_an_error():
    with pytest.raises(ValueError, match="nothing to split"):
        split(10, [("0xa", 0)])


# --- the export -------------------------------------------------------------------------------


def recompute(inputs: dict) -> dict[str, int]:
    """An owner's own reading of the documented rule, from the export's inputs alone."""
    budget = int(inputs["budget"])
    weights = inputs["weights"]
    total = sum(w for _, w in weights)
    shares = {wallet: budget * w // total for wallet, w in weights}
    left = budget - sum(shares.values())
    by_remainder = sorted(weights, key=lambda item: (-(budget * item[1] % total), item[0]))
    for wallet, _ in by_remainder[:left]:
        shares[wallet] += 1
    return shares


def test_an_export_by_credits_can_be_checked_by_every_owner(operator, october):
    query = {"period": OCTOBER, "budget": "1000", **CREDITS}
    answer = operator.get("/payouts/export", query_string=query)
    assert answer.status_code == 200
    export = answer.json
    # 1000 × 1500/4500 = 333 r 1500, 1000 × 3000/4500 = 666 r 3000: the unit left to the second.
    assert [(s["walletAddress"], s["weight"], s["amount"]) for s in export["shares"]] == [
        (october[0], 1500, "333"),
        (october[1], 3000, "667"),
    ]
    assert export["inputs"]["weights"] == [[october[0], 1500], [october[1], 3000]]
    canonical = json.dumps(export["inputs"], sort_keys=True, separators=(",", ":"))
    assert export["inputsSha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert recompute(export["inputs"]) == {
        s["walletAddress"]: int(s["amount"]) for s in export["shares"]
    }

    as_csv = operator.get("/payouts/export.csv", query_string=query)
    body = as_csv.get_data()
    # Records made without heartbeats hold no receipts: the empty tree's root, and none.
    empty = EMPTY_ROOT.hex()
    assert body.decode().splitlines() == [
        "walletAddress,weight,amount,receiptsRoot,receiptCount",
        f"{october[0]},1500,333,{empty},0",
        f"{october[1]},3000,667,{empty},0",
    ]
    assert hashlib.sha256(body).hexdigest() == export["exportSha256"]
    assert as_csv.headers["X-Tassium-Export-SHA256"] == export["exportSha256"]
    assert as_csv.headers["X-Tassium-Inputs-SHA256"] == export["inputsSha256"]


def test_an_export_by_uptime_weighs_milliseconds(operator, october):
    export = operator.get(
        "/payouts/export", query_string={"period": OCTOBER, "budget": "600", "basis": "uptime"}
    ).json
    assert [(s["weight"], s["amount"]) for s in export["shares"]] == [
        (3600_000, "100"),
        (7200_000, "200"),
        (10800_000, "300"),
    ]


def test_exports_and_records_weigh_uptime_unless_told_credits(operator, october):
    query = {"period": OCTOBER, "budget": "600"}
    export = operator.get("/payouts/export", query_string=query).json
    assert export["basis"] == export["inputs"]["basis"] == "uptime"
    assert [s["amount"] for s in export["shares"]] == ["100", "200", "300"]

    recorded = operator.post("/payouts", json=query)
    assert (recorded.status_code, recorded.json["basis"]) == (201, "uptime")
    assert recorded.json["exportSha256"] == export["exportSha256"]


def test_a_json_export_is_whole_or_refused_and_the_csv_has_every_share(
    operator, october, monkeypatch
):
    query = {"period": OCTOBER, "budget": "600"}  # by uptime: three shares
    monkeypatch.setattr(payouts, "MAX_JSON_SHARES", 2)
    refused = operator.get("/payouts/export", query_string=query)
    assert refused.status_code == 422
    assert refused.json["error"] == (
        "3 shares are more than the JSON export lists (2): ask for text/csv "
        "(GET /payouts/export.csv), which has them all"
    )
    as_csv = operator.get("/payouts/export.csv", query_string=query)
    assert as_csv.status_code == 200
    assert len(as_csv.get_data(as_text=True).splitlines()) == 1 + 3
    monkeypatch.setattr(payouts, "MAX_JSON_SHARES", 3)
    assert len(operator.get("/payouts/export", query_string=query).json["shares"]) == 3


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"period": OCTOBER}, 400, "budget"),
        ({"period": OCTOBER, "budget": "-1"}, 400, "budget"),
        ({"period": OCTOBER, "budget": str(2**256)}, 400, "budget"),
        ({"period": OCTOBER, "budget": "1e3"}, 400, "budget"),
        ({"period": "2026-13", "budget": "5"}, 400, "no such month"),
        ({"period": OCTOBER, "budget": "5", "basis": "votes"}, 400, "basis"),
        ({"period": "2026-09", "budget": "5"}, 422, "nothing to split"),
    ],
)
def test_bad_exports_say_why(operator, october, query, status, message):
    answer = operator.get("/payouts/export", query_string=query)
    assert (answer.status_code, message in answer.json["error"]) == (status, True)


# --- recording --------------------------------------------------------------------------------


def payment_rows() -> list[tuple]:
    query = Payment.select().order_by(Payment.creator)
    return [(p.creator, p.amount, p.tx_hash, p.payout_id) for p in query]


def test_recording_writes_the_payments_once_per_period(operator, october):
    body = {"period": OCTOBER, "budget": "1000", **CREDITS}
    body["txHash"] = TX.upper().replace("0X", "0x")
    first = operator.post("/payouts", json=body)
    assert first.status_code == 201
    recorded = first.json
    assert recorded["txHash"] == TX
    assert [(p["walletAddress"], p["amount"]) for p in recorded["payments"]] == [
        (october[0], "333"),
        (october[1], "667"),
    ]
    rows = payment_rows()
    assert rows == [
        (october[0], "333", TX, recorded["id"]),
        (october[1], "667", TX, recorded["id"]),
    ]
    assert sum(int(amount) for _, amount, _, _ in rows) == 1000
    export = operator.get(
        "/payouts/export", query_string={"period": OCTOBER, "budget": "1000", **CREDITS}
    )
    assert recorded["exportSha256"] == export.json["exportSha256"]

    again = operator.post("/payouts", json=body)
    assert (again.status_code, again.json) == (200, recorded)
    assert payment_rows() == rows
    assert operator.get(f"/payouts/{OCTOBER}").json == recorded
    # The list leaves the payments out and counts them.
    summary = {key: value for key, value in recorded.items() if key != "payments"}
    assert summary["paymentCount"] == 2
    assert operator.get("/payouts").json["items"] == [summary]

    repaid = operator.post("/payouts", json={**body, "txHash": "0x" + "cd" * 32})
    assert repaid.status_code == 409
    assert "paid by" in repaid.json["error"]

    other = operator.post("/payouts", json={**body, "budget": "999"})
    assert other.status_code == 409
    assert "different payout" in other.json["error"]
    assert payment_rows() == rows


def test_a_payouts_payments_are_paged_and_the_list_only_counts_them(operator, october):
    recorded = operator.post("/payouts", json={"period": OCTOBER, "budget": "600"}).json
    assert recorded["paymentCount"] == 3
    wallets = [p["walletAddress"] for p in recorded["payments"]]
    assert wallets == sorted(october)

    page = operator.get(f"/payouts/{OCTOBER}", query_string={"limit": 1, "offset": 1}).json
    assert [(p["walletAddress"], p["amount"]) for p in page["payments"]] == [(october[1], "200")]
    assert page["paymentCount"] == 3
    past = operator.get(f"/payouts/{OCTOBER}", query_string={"offset": 3}).json
    assert (past["payments"], past["paymentCount"]) == ([], 3)
    [listed] = operator.get("/payouts").json["items"]
    assert "payments" not in listed and listed["paymentCount"] == 3

    too_many = operator.get(f"/payouts/{OCTOBER}", query_string={"limit": 201})
    assert too_many.status_code == 400
    assert too_many.json["error"] == "query parameter limit must be from 1 to 200"
    assert operator.get("/payouts", query_string={"limit": 201}).status_code == 400


def test_a_period_not_settled_yet_cannot_be_recorded(operator, october):
    month = utcnow().strftime("%Y-%m")
    WorkerMetric.create(
        worker=october[0], timestamp=utcnow() - HOUR, container_count=1, credits_millis=10
    )
    answer = operator.post("/payouts", json={"period": month, "budget": "5", **CREDITS})
    assert answer.status_code == 422
    config = operator.application.config["TASSIUM"]
    end = Period.parse(month, utcnow()).end
    final = end + timedelta(seconds=config.max_backfill + config.gap)
    assert answer.json["error"] == (
        f"{month} is not final yet: it ends at {format_timestamp(end)}, heartbeats may still "
        f"arrive up to {units.duration(timedelta(seconds=config.max_backfill))} late "
        f"(max_backfill) and a window grows up to {units.duration(timedelta(seconds=config.gap))}"
        f" (the gap) past its last heartbeat, so its figures can change until "
        f"{format_timestamp(final)}: record its payout from then on"
    )
    assert (payment_rows(), Payout.select().count()) == ([], 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"period": OCTOBER, "budget": "5", "txHash": "0x12"}, "txHash"),
        ({"period": OCTOBER, "budget": 5}, "budget"),
        ({"period": 202610, "budget": "5"}, "period"),
        ({"budget": "5"}, "period"),
        ({"period": OCTOBER, "budget": "5", "extra": 1}, "extra"),
    ],
)
def test_bad_records_change_nothing(operator, october, body, message):
    answer = operator.post("/payouts", json=body)
    assert answer.status_code == 400
    assert message in answer.json["error"]
    assert (payment_rows(), Payout.select().count()) == ([], 0)


def test_recording_needs_the_api_token_when_one_is_set(make_app, october):
    client = make_app(api_token="t" * 32).test_client()
    body = {"period": OCTOBER, "budget": "10"}
    assert client.post("/payouts", json=body).status_code == 401
    assert Payout.select().count() == 0
    answer = client.post("/payouts", json=body, headers={"Authorization": "Bearer " + "t" * 32})
    assert answer.status_code == 201


def _record_in_another_process(url, barrier, results, periods=(OCTOBER,)) -> None:
    """Plan each of ``periods`` by credits, then, past the barrier, record the one this
    process's turn picks (turns are handed out 0, 1, … as the processes arrive)."""
    try:
        with connected(url):
            plans = [
                payouts.plan(
                    Period.parse(text, utcnow()),
                    "credits",
                    1000,
                    now=utcnow(),
                    gap=timedelta(minutes=30),
                    liveness_interval=timedelta(seconds=10),
                )
                for text in periods
            ]
            turn = barrier.wait(timeout=30)
            try:
                payout, created = payouts.record(
                    plans[turn % len(plans)],
                    tx_hash=None,
                    now=utcnow(),
                    settling=payouts.Settling(HOUR, HOUR),
                )
            except ValueError as exc:
                results.put(("refused", str(exc), False))
                return
        results.put(("ok", payout.period, created))
    except Exception as exc:  # reported to the test instead of lost in the child's stderr
        results.put(("error", repr(exc), False))


def test_processes_recording_at_once_write_one_payout(database_url, october):
    processes = 4
    outcomes = at_once(_record_in_another_process, database_url, processes)

    assert {(status, period) for status, period, _ in outcomes} == {("ok", OCTOBER)}, outcomes
    assert sorted(created for _, _, created in outcomes) == [False] * (processes - 1) + [True]
    with connected(database_url):
        assert Payout.select().count() == 1
        assert [(p.creator, p.amount) for p in Payment.select().order_by(Payment.creator)] == [
            (october[0], "333"),
            (october[1], "667"),
        ]


def test_processes_recording_overlapping_periods_at_once_write_one_of_them(database_url, october):
    race = partial(_record_in_another_process, periods=(OCTOBER, MID_OCTOBER))
    outcomes = at_once(race, database_url, 4)

    # Two processes per period: the first recorder's twin finds its payout, the other two are
    # refused, whichever period came first.
    (winner,) = {period for status, period, _ in outcomes if status == "ok"}
    assert sorted(status for status, _, _ in outcomes) == ["ok", "ok", "refused", "refused"]
    assert sorted(created for _, _, created in outcomes) == [False, False, False, True]
    refusals = [message for status, message, _ in outcomes if status == "refused"]
    assert all(f"overlaps the payout recorded for {winner} (" in m for m in refusals), refusals
    with connected(database_url):
        assert Payout.select().count() == 1
        assert {p.payout_id for p in Payment.select()} == {Payout.get().id}


def test_a_transaction_hash_can_be_added_to_a_recorded_payout(operator, october):
    body = {"period": OCTOBER, "budget": "1000"}
    recorded = operator.post("/payouts", json=body).json
    assert recorded["txHash"] is None
    assert {tx for _, _, tx, _ in payment_rows()} == {None}

    paid = operator.post("/payouts", json={**body, "txHash": TX})
    assert paid.status_code == 200
    assert paid.json == {**recorded, "txHash": TX}
    assert {tx for _, _, tx, _ in payment_rows()} == {TX}


def post_payout(operator, period: str, **fields):
    """POST /payouts by credits (the fixture's November earns credits, no uptime)."""
    return operator.post("/payouts", json={"period": period, "budget": "1000", **CREDITS, **fields})


def test_a_period_overlapping_a_recorded_one_is_refused_naming_it(operator, october):
    assert post_payout(operator, OCTOBER).status_code == 201
    rows = payment_rows()

    refused = post_payout(operator, MID_OCTOBER)
    assert refused.status_code == 409
    assert refused.json["error"] == (
        f"{MID_OCTOBER} overlaps the payout recorded for {OCTOBER} "
        "(2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z)"
    )
    # The same hours under another name are the same hours.
    same_hours = post_payout(operator, "2026-10-01T00:00:00Z/2026-11-01T00:00:00Z")
    assert same_hours.status_code == 409
    assert f"overlaps the payout recorded for {OCTOBER}" in same_hours.json["error"]
    assert (payment_rows(), Payout.select().count()) == (rows, 1)


def test_a_period_starting_where_a_recorded_one_ends_is_recorded(operator, october):
    assert post_payout(operator, "2026-11").status_code == 201
    assert post_payout(operator, OCTOBER).status_code == 201
    assert [p["period"] for p in operator.get("/payouts").json["items"]] == ["2026-11", OCTOBER]


def test_a_paid_payout_keeps_its_transaction_and_payments(operator, october):
    assert post_payout(operator, OCTOBER, txHash=TX).status_code == 201
    rows = payment_rows()

    repaid = post_payout(operator, OCTOBER, txHash="0x" + "cd" * 32)
    assert repaid.status_code == 409
    assert repaid.json["error"] == f"the payout for {OCTOBER} was paid by {TX}"
    assert payment_rows() == rows
    assert operator.get(f"/payouts/{OCTOBER}").json["txHash"] == TX
    # What was paid is still what anyone recomputes from the export's inputs.
    query = {"period": OCTOBER, "budget": "1000", **CREDITS}
    export = operator.get("/payouts/export", query_string=query).json
    assert recompute(export["inputs"]) == {wallet: int(amount) for wallet, amount, _, _ in rows}
