"""Every list is bounded (DESIGN.md, trust model): a collector with a month of history and
500 workers answers each read within a size, asking for more than a maximum is a 400, and a
cut list says how many there are. The sizes of answers to seeded rows are deterministic, so
these are unit tests, not timings.

Measured before the bounds on the same rows: metrics of 168 hours 1.0 MB (both dialects),
the dialect's uptime 307 KB, the dashboard 1.2 MB, a worker's 30-day report 531 KB."""

from datetime import datetime, timedelta

import pytest

from collector.pages import ui_v1
from collector.store.models import (
    OpenWindow,
    Payment,
    Payout,
    Project,
    UptimeRecord,
    Worker,
    WorkerContainer,
    WorkerMetric,
)
from collector.uptime.workers import METRICS_POINTS
from protocol.times import format_timestamp, utcnow
from tests.factories import new_wallet

FLEET = 500
# First by wallet, so that the dashboard's first page shows its bars.
BUSY = "0x" + "00" * 20
CREATOR = "0x" + "cd" * 20
DAYS = 30
MINUTE = timedelta(minutes=1)
KB = 1000


def insert(model, rows: list[dict]) -> None:
    for start in range(0, len(rows), 500):
        model.insert_many(rows[start : start + 500]).execute()


def seed_fleet(now: datetime) -> list[str]:
    """500 workers, each up 22 hours a day for 30 days, with 3 containers and an open
    window; the first, BUSY, flaps instead: up 10 minutes in every 15."""
    wallets = [BUSY, *sorted(new_wallet() for _ in range(FLEET - 1))]
    seen = now - MINUTE
    insert(
        Worker,
        [
            {
                "wallet_address": wallet,
                "created_at": now - timedelta(days=DAYS + 1),
                "last_heartbeat_at": seen,
                "last_seen_at": seen,
                "hostname": f"host-{n}.example.net",
                "agent_version": "0.1.0",
                "docker_available": True,
                "cpu_cores": 8,
                "ram_total_gb": 32.0,
                "storage_total_gb": 500.0,
            }
            for n, wallet in enumerate(wallets)
        ],
    )
    insert(
        OpenWindow,
        [{"worker": w, "start_time": now - 180 * MINUTE, "end_time": seen} for w in wallets],
    )
    insert(
        WorkerContainer,
        [
            {
                "worker": wallet,
                "container_name": f"app-{n}",
                "port": "0.0.0.0:8080->80/tcp",
                "image": "local/app:latest",
                "state": "running",
                "health": "healthy",
            }
            for wallet in wallets
            for n in range(3)
        ],
    )
    start = now - timedelta(days=DAYS)
    daily = [
        {"worker": w, "time_from": day + 60 * MINUTE, "time_to": day + 23 * 60 * MINUTE}
        for w in wallets[1:]
        for day in (start + timedelta(days=d) for d in range(DAYS))
    ]
    flapping = [
        {"worker": BUSY, "time_from": t, "time_to": t + 10 * MINUTE}
        for t in (start + 15 * MINUTE * n for n in range(DAYS * 96 - 13))
    ]
    insert(UptimeRecord, daily + flapping)
    return wallets


def seed_metrics(now: datetime) -> int:
    """BUSY's points of the month: one every 2 minutes, the last a minute ago (so that a
    week asked for a moment later still holds 7 × 720)."""
    start = now - timedelta(days=DAYS)
    points = [
        {
            "worker": BUSY,
            "timestamp": start + MINUTE + 2 * MINUTE * n,
            "cpu_cores": 8,
            "cpu_usage_percent": 12.5,
            "ram_total_gb": 32.0,
            "ram_used_gb": 7.25,
            "storage_total_gb": 500.0,
            "storage_used_gb": 120.5,
            "container_count": 3,
            "credits_millis": 135_000,
        }
        for n in range(DAYS * 720)
    ]
    insert(WorkerMetric, points)
    return len(points)


def seed_money(now: datetime, wallets: list[str]) -> None:
    """A payout of a payment to every worker, and 1,000 payments besides."""
    payout = Payout.create(
        period="2026-10",
        period_start=now - timedelta(days=60),
        period_end=now - timedelta(days=30),
        basis="uptime",
        budget="1000000",
        inputs_sha256="0" * 64,
        export_sha256="0" * 64,
    )
    payments = [
        {"name": "payout 2026-10", "amount": "2000", "creator": w, "payout": payout.id}
        for w in wallets
    ]
    payments += [{"name": f"payment {n}", "amount": "5", "creator": CREATOR} for n in range(1000)]
    insert(Payment, payments)
    insert(
        Project,
        [
            {
                "name": f"app-{n}",
                "url": f"https://app-{n}.example.net",
                "github": "tassium/app",
                "creator": CREATOR,
                "status": ("pending", "processing", "success", "failed")[n % 4],
            }
            for n in range(300)
        ],
    )


@pytest.fixture
def month(dbconn) -> tuple[datetime, list[str]]:
    now = utcnow()
    with dbconn.atomic():
        wallets = seed_fleet(now)
        seed_metrics(now)
        seed_money(now, wallets)
    return now, wallets


def sized(client, path: str, bound: int, **query):
    """The answer, which must be a 200 of at most ``bound`` bytes."""
    answer = client.get(path, query_string=query)
    assert answer.status_code == 200, (path, answer.get_data(as_text=True)[:300])
    size = len(answer.get_data())
    assert size <= bound, f"{path}: {size:,} bytes, more than {bound:,}"
    return answer


def test_a_month_of_a_busy_worker_and_500_more_is_answered_in_bounded_sizes(
    client, operator, month
):
    now, wallets = month
    worker = f"/workers/{BUSY}"
    week = {"hours": 168}

    points = sized(client, f"{worker}/metrics", 100 * KB, **week).json
    # A week holds 5,040 points: thinned to at most the limit, the newest kept.
    assert points["total"] == 7 * 720
    assert METRICS_POINTS - 50 < len(points["points"]) <= METRICS_POINTS
    assert points["points"][-1]["timestamp"] == format_timestamp(now - MINUTE)
    dialect = sized(client, f"/api/v1{worker}/metrics", 100 * KB, **week)
    assert dialect.json == points["points"] and dialect.headers["X-Total-Count"] == "5040"

    span = {"from": format_timestamp(now - timedelta(days=DAYS)), "to": format_timestamp(now)}
    uptime = sized(client, f"{worker}/uptime", 100 * KB, **span, limit=1000).json
    assert len(uptime["records"]) == 1000 and uptime["recordCount"] == DAYS * 96 - 13
    spans = sized(client, f"/api/v1{worker}/uptime", 100 * KB)
    assert len(spans.json) == ui_v1.UPTIME_SPANS
    assert spans.headers["X-Total-Count"] == str(DAYS * 96 - 13 + 1)  # with the open window

    page = sized(client, "/", 300 * KB).text
    assert page.count('<li class="worker"') == 20 and f'data-wallet="{BUSY}"' in page
    assert "Showing 20 of 500 workers; search by wallet to narrow." in page
    # The busy worker's days each hold 96 downtimes: a few are listed, the rest counted.
    assert "and 93 more times down" in page
    sized(client, "/", 300 * KB, fragment=1)
    # Whatever the page, a search finds a worker.
    found = sized(client, "/", 100 * KB, wallet=wallets[-1]).text
    assert f'data-wallet="{wallets[-1]}"' in found

    report = sized(operator, f"/reports/workers/{BUSY}", 100 * KB, period="30d").json
    assert len(report["uptime"]) == 100 and report["uptimeCount"] > 2800
    assert len(report["downtime"]) == 100 and report["downtimeCount"] > 2800
    assert len(sized(operator, "/reports/fleet", 100 * KB, period="30d").json["items"]) == 100

    assert len(sized(client, "/workers", 100 * KB).json["items"]) == 50
    assert len(sized(client, "/api/v1/workers", 200 * KB).json) == FLEET
    assert sized(client, "/deployments", 100 * KB).json["total"] == 300
    assert sized(operator, "/payments", 100 * KB).json["total"] == FLEET + 1000
    [payout] = sized(operator, "/payouts", 100 * KB).json["items"]
    assert payout["paymentCount"] == FLEET and "payments" not in payout
    one = sized(operator, "/payouts/2026-10", 100 * KB).json
    assert (len(one["payments"]), one["paymentCount"]) == (50, FLEET)
    export = {"period": "30d", "budget": "1000000"}
    assert len(sized(operator, "/payouts/export", 200 * KB, **export).json["shares"]) == FLEET


def test_the_dialects_deployments_are_cut_at_the_maximum_and_counted(client, dbconn):
    insert(
        Project,
        [
            {"name": f"app-{n:03}", "url": "", "github": "tassium/app", "creator": CREATOR}
            for n in range(205)
        ],
    )
    first = client.get("/api/v1/deployments", query_string={"creator": CREATOR})
    assert len(first.json) == 200 and first.headers["X-Total-Count"] == "205"
    assert first.headers["Link"] == (
        f'</api/v1/deployments?creator={CREATOR}&offset=200>; rel="next"'
    )
    rest = client.get("/api/v1/deployments", query_string={"creator": CREATOR, "offset": 200})
    assert len(rest.json) == 5 and "Link" not in rest.headers
    # Newest first, as GET /deployments: the five left are the oldest.
    assert [d["appName"] for d in rest.json] == [f"app-{n:03}" for n in range(4, -1, -1)]
    refused = client.get("/api/v1/deployments", query_string={"creator": CREATOR, "limit": 201})
    assert refused.status_code == 400
    assert refused.json["error"] == "query parameter limit must be from 1 to 200"


@pytest.fixture
def flapping(dbconn) -> tuple[str, list[tuple[datetime, datetime]]]:
    """A worker with five records in the last days and an open window."""
    wallet = Worker.create(wallet_address=new_wallet()).wallet_address
    now = utcnow().replace(microsecond=0)
    spans = [
        (now - timedelta(days=5 - d), now - timedelta(days=5 - d) + 10 * MINUTE) for d in range(5)
    ]
    for start, end in spans:
        UptimeRecord.create(worker=wallet, time_from=start, time_to=end)
    window = (now - 20 * MINUTE, now - MINUTE)
    OpenWindow.create(worker=wallet, start_time=window[0], end_time=window[1])
    # Older than the dialect's 30 days: never listed.
    old = now - timedelta(days=40)
    UptimeRecord.create(worker=wallet, time_from=old, time_to=old + MINUTE)
    return wallet, [*spans, window]


def test_the_dialects_uptime_pages_through_the_records_then_the_open_window(client, flapping):
    wallet, spans = flapping
    path = f"/api/v1/workers/{wallet}/uptime"

    def starts(answer) -> list[str]:
        return [s["startTime"] for s in answer.json]

    expected = [format_timestamp(start) for start, _ in spans]
    whole = client.get(path)
    assert starts(whole) == expected and whole.headers["X-Total-Count"] == "6"
    assert whole.json[-1]["durationMinutes"] == 19.0
    pages = [client.get(path, query_string={"limit": 2, "offset": n}) for n in (0, 2, 4, 6)]
    assert [starts(p) for p in pages] == [expected[:2], expected[2:4], expected[4:], []]
    assert [p.headers.get("Link") for p in pages] == [
        f'</api/v1/workers/{wallet}/uptime?limit=2&offset=2>; rel="next"',
        f'</api/v1/workers/{wallet}/uptime?limit=2&offset=4>; rel="next"',
        None,
        None,
    ]
    assert starts(client.get(path, query_string={"offset": 5})) == expected[5:]
    refused = client.get(path, query_string={"limit": 1001})
    assert refused.status_code == 400
    assert refused.json["error"] == "query parameter limit must be from 1 to 1000"
    unknown = client.get(f"/api/v1/workers/{new_wallet()}/uptime")
    assert (unknown.json, unknown.headers["X-Total-Count"]) == ([], "0")
