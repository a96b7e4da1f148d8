"""collector/money/report_routes.py and collector/money/report_csv.py: the reports as JSON and CSV,
their paging and limits, the refusals, and the fleet's CSV streamed a batch at a time. The
figures themselves are checked by hand in test_reports.py."""

import csv
import io
from datetime import timedelta

import pytest

from collector.money import reports
from collector.money.reports import AGENT_SILENT
from collector.store.models import Worker
from protocol.times import format_timestamp
from tests.collector.money.test_reports import T0, H, M, record, worker
from tests.factories import new_wallet


@pytest.fixture
def fleet(operator, dbconn):
    """Three workers, up 0 %, 50 % and 100 % of the day before T0 (as seen at T0 + 1 day)."""
    wallets = sorted(new_wallet() for _ in range(3))
    day = T0 - timedelta(days=1)
    for wallet in wallets:
        Worker.create(wallet_address=wallet, created_at=day, last_heartbeat_at=day)
    record(wallets[1], day, day + 12 * H)
    record(wallets[2], day, T0)
    return wallets


PERIOD = f"{format_timestamp(T0 - timedelta(days=1))}/{format_timestamp(T0)}"


def test_the_fleet_report_pages_by_wallet(operator, fleet):
    first = operator.get("/reports/fleet", query_string={"period": PERIOD, "limit": 2}).json
    assert [row["walletAddress"] for row in first["items"]] == fleet[:2]
    assert first["next"] == fleet[1]
    rest = operator.get(
        "/reports/fleet", query_string={"period": PERIOD, "limit": 2, "after": first["next"]}
    ).json
    assert ([row["walletAddress"] for row in rest["items"]], rest["next"]) == (fleet[2:], None)
    rows = first["items"] + rest["items"]
    assert [row["uptimeSeconds"] for row in rows] == [0, 12 * 3600, 24 * 3600]
    assert [row["uptimeFraction"] for row in rows] == [0.0, 0.5, 1.0]
    assert [row["downtimeSeconds"] for row in rows] == [24 * 3600, 12 * 3600, 0]


@pytest.mark.parametrize("how", ["suffix", "accept"])
def test_the_fleet_report_as_csv(operator, fleet, how):
    if how == "suffix":
        answer = operator.get("/reports/fleet.csv", query_string={"period": PERIOD})
    else:
        answer = operator.get(
            "/reports/fleet", query_string={"period": PERIOD}, headers={"Accept": "text/csv"}
        )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [r["walletAddress"] for r in rows] == fleet
    assert [r["uptimeFraction"] for r in rows] == ["0.0", "0.5", "1.0"]
    assert [r["credits"] for r in rows] == ["0", "0", "0"]


def test_a_workers_report_lists_its_downtime_with_causes(operator, fleet):
    answer = operator.get(f"/reports/workers/{fleet[1]}", query_string={"period": PERIOD})
    assert answer.status_code == 200
    assert answer.json["uptimeFraction"] == 0.5
    assert answer.json["downtime"] == [
        {
            "from": format_timestamp(T0 - 12 * H),
            "to": format_timestamp(T0),
            "seconds": 12 * 3600,
            "cause": AGENT_SILENT,
        }
    ]
    as_csv = operator.get(f"/reports/workers/{fleet[1]}.csv", query_string={"period": PERIOD})
    assert as_csv.get_data(as_text=True).splitlines() == [
        "from,to,seconds,cause",
        f"{format_timestamp(T0 - 12 * H)},{format_timestamp(T0)},43200,agent_silent",
    ]


def test_a_workers_report_lists_its_last_spans_and_counts_them_all(operator, dbconn):
    day = T0 - timedelta(days=1)
    wallet = worker(created=day, last_heartbeat_at=day)
    # Up the first 10 minutes of each of the day's first five hours: five spans and five
    # stretches of downtime, the last until the end of the period.
    for hour in range(5):
        record(wallet, day + hour * H, day + hour * H + 10 * M)
    path = f"/reports/workers/{wallet}"
    whole = operator.get(path, query_string={"period": PERIOD}).json
    assert (whole["uptimeCount"], whole["downtimeCount"]) == (5, 5)
    assert len(whole["uptime"]) == len(whole["downtime"]) == 5

    cut = operator.get(path, query_string={"period": PERIOD, "limit": 2}).json
    assert cut["uptime"] == whole["uptime"][-2:]
    assert cut["downtime"] == whole["downtime"][-2:]
    assert cut["downtime"][-1]["to"] == format_timestamp(T0)
    # The figures still count every span.
    assert (cut["uptimeCount"], cut["downtimeCount"]) == (5, 5)
    assert cut["uptimeSeconds"] == whole["uptimeSeconds"] == 5 * 600
    # The CSV has every downtime, whatever the limit.
    as_csv = operator.get(path + ".csv", query_string={"period": PERIOD, "limit": 2})
    assert len(as_csv.get_data(as_text=True).splitlines()) == 1 + 5

    too_many = operator.get(path, query_string={"limit": reports.MAX_SPANS_SHOWN + 1})
    assert too_many.status_code == 400
    assert too_many.json["error"] == "query parameter limit must be from 1 to 1000"


@pytest.mark.parametrize(
    ("path", "query", "status", "message"),
    [
        ("/reports/fleet", {"period": "2026-13"}, 400, "no such month"),
        ("/reports/fleet", {"after": "0x12"}, 400, "after"),
        ("/reports/fleet", {"limit": "0"}, 400, "limit"),
        ("/reports/fleet", {"limit": "1001"}, 400, "limit must be from 1 to 1000"),
        ("/reports/workers/0x12", {}, 400, "wallet"),
        ("/reports/workers/" + "0x" + "ab" * 20, {}, 404, "no worker"),
    ],
)
def test_bad_report_requests_say_why(operator, dbconn, path, query, status, message):
    answer = operator.get(path, query_string=query)
    assert answer.status_code == status
    assert message in answer.json["error"]


def test_the_fleet_streams_a_batch_at_a_time(operator, fleet, monkeypatch):
    monkeypatch.setattr(reports, "BATCH", 2)
    asked = []
    real = reports.worker_reports

    def counted(wallets, *args, **kwargs):
        asked.append(list(wallets))
        return real(wallets, *args, **kwargs)

    monkeypatch.setattr(reports, "worker_reports", counted)
    answer = operator.get("/reports/fleet.csv", query_string={"period": PERIOD})
    assert answer.is_streamed
    lines = answer.get_data(as_text=True).splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == fleet
    # Never more than a batch of workers in memory, and each worker read once.
    assert asked == [fleet[:2], fleet[2:]]


# --- flags (collector/uptime/capacity.py) -----------------------------------------------------


def test_the_fleets_median_is_read_once_a_report_and_the_csv_has_the_flags(
    operator, fleet, monkeypatch
):
    monkeypatch.setattr(reports, "BATCH", 2)
    read = []
    real = reports._median_rate
    monkeypatch.setattr(reports, "_median_rate", lambda period: read.append(period) or real(period))
    lines = operator.get("/reports/fleet.csv", query_string={"period": PERIOD}).text.splitlines()
    assert lines[0] == ",".join(reports.FLEET_COLUMNS) and lines[0].endswith(",flags")
    assert len(lines) == 1 + 3 and len(read) == 1
