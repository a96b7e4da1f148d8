"""Workers: the routes that show status, containers and uptime (enrolling them:
test_enrollment.py)."""

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from collector.store.models import OpenWindow, UptimeRecord, Worker, WorkerMetric
from collector.uptime.enrollment import issue_token
from protocol.times import format_timestamp, utcnow
from tests.factories import FakeWorker, Wallet, bearer, machine, minutes_ago, new_wallet

API_TOKEN = "a" * 32


def token_for(wallet: str, ttl: timedelta = timedelta(hours=1)) -> str:
    return issue_token(wallet, ttl, utcnow())


def keys(dbconn) -> list:
    return sorted((w.wallet_address, w.public_key) for w in Worker.select())


def test_a_worker_shows_online_window_and_containers(client):
    worker = FakeWorker()
    worker.enroll(client)
    worker.beat(client, minutes_ago(1))
    shown = client.get(f"/workers/{worker.wallet}").json
    assert shown["online"] is True and shown["enrolled"] is True
    assert shown["openWindow"]["endTime"] == shown["lastHeartbeat"]
    assert (
        client.get(f"/workers/{worker.wallet}/containers").json["containers"][0]["containerName"]
        == "web"
    )
    listed = client.get("/workers").json
    assert [w["walletAddress"] for w in listed["items"]] == [worker.wallet]


def details(client, wallet: str, **headers) -> tuple:
    shown = client.get(f"/workers/{wallet}", headers=headers).json
    return shown["publicKey"], shown["hostname"], shown["tailscaleIp"]


def test_a_workers_network_details_are_for_its_owner_and_the_operator(client, operator, dbconn):
    worker = FakeWorker()
    worker.enroll(client)
    assert worker.beat(client, hostname="rig-1", tailscaleIp="100.64.1.2").status_code == 200
    theirs = (worker.public_key, "rig-1", "100.64.1.2")
    assert details(operator, worker.wallet) == theirs
    assert details(client, worker.wallet, **bearer(worker.owner.sign_in(client))) == theirs
    hidden = (None, None, None)
    assert details(client, worker.wallet) == hidden
    assert details(client, worker.wallet, **bearer(Wallet().sign_in(client))) == hidden
    [listed] = client.get("/workers").json["items"]
    assert (listed["publicKey"], listed["hostname"], listed["tailscaleIp"]) == hidden
    assert client.get(f"/workers/{worker.wallet}").json["enrolled"] is True
    replacement = worker.another_machine()
    assert replacement.enroll(client).status_code == 200
    assert details(operator, worker.wallet)[0] == replacement.public_key


def test_a_worker_without_a_key_shows_none(make_app, dbconn):
    client = make_app(require_signatures=False).test_client()
    worker = FakeWorker()
    assert client.post("/heartbeat", json=worker.heartbeat_body()).status_code == 200
    shown = client.get(f"/workers/{worker.wallet}").json
    assert (shown["enrolled"], shown["publicKey"]) == (False, None)
    assert client.get("/workers").json["items"][0]["publicKey"] is None


def test_a_worker_silent_longer_than_the_gap_is_offline(client):
    worker = FakeWorker()
    worker.enroll(client)
    worker.beat(client, minutes_ago(31))
    assert client.get(f"/workers/{worker.wallet}").json["online"] is False


@pytest.mark.parametrize("path, code", [("0x" + "1" * 40, 404), ("0x123", 400)])
def test_an_unknown_or_invalid_wallet_is_refused(client, path, code):
    for suffix in ("", "/containers", "/uptime"):
        assert client.get(f"/workers/{path}{suffix}").status_code == code


def test_uptime_reports_records_the_open_window_and_clipped_seconds(client, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    now = utcnow().replace(microsecond=0)
    # Two windows: 5h ago to 4h ago (closed by the 2h-ago heartbeat), and 2h ago to 1h ago.
    for minutes in (300, 270, 240, 120, 90, 60):
        assert worker.beat(client, now - timedelta(minutes=minutes)).status_code == 200
    start, end = now - timedelta(minutes=270), now - timedelta(minutes=90)
    uptime = client.get(
        f"/workers/{worker.wallet}/uptime",
        query_string={"from": format_timestamp(start), "to": format_timestamp(end)},
    ).json
    assert uptime["records"] == [
        {
            "timeFrom": format_timestamp(now - timedelta(minutes=300)),
            "timeTo": format_timestamp(now - timedelta(minutes=240)),
        }
    ]
    assert uptime["openWindow"] == {
        "startTime": format_timestamp(now - timedelta(minutes=120)),
        "endTime": format_timestamp(now - timedelta(minutes=60)),
    }
    # Clipped to the range: 30 min of the record, 30 min of the open window, of 180 min.
    assert uptime["totalSeconds"] == 3600
    assert uptime["uptimeFraction"] == pytest.approx(1 / 3, abs=1e-6)


@pytest.mark.parametrize(
    "query, message",
    [
        ({"from": "yesterday"}, "from must be an RFC 3339"),
        ({"from": "2026-11-25T00:00:00Z", "to": "2026-11-24T00:00:00Z"}, "earlier than"),
        ({"from": "0001-01-01T00:00:00Z"}, "from must lie from 1970"),
        ({"to": "0001-01-01T00:00:00+01:00"}, "to must lie from 1970"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "to must lie from 1970"),
    ],
)
def test_a_bad_uptime_range_is_a_bad_request(client, query, message):
    worker = FakeWorker()
    worker.enroll(client)
    response = client.get(f"/workers/{worker.wallet}/uptime", query_string=query)
    assert response.status_code == 400 and message in response.json["error"]


# --- what the worker client shows ---------------------------------------------------------


def test_a_new_worker_shows_no_facts_no_credits_and_an_unknown_status(client):
    worker = FakeWorker()
    worker.enroll(client)
    shown = client.get(f"/workers/{worker.wallet}").json
    assert {
        key: shown[key]
        for key in ("tailscaleIp", "cpuCores", "ramTotalGb", "storageTotalGb", "credits")
    } == {
        "tailscaleIp": None,
        "cpuCores": None,
        "ramTotalGb": None,
        "storageTotalGb": None,
        "credits": 0,
    }
    assert (shown["status"], shown["lastPing"]) == ("UNKNOWN", None)


def test_a_worker_shows_its_machine_credits_and_live_status(client, operator, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    start = utcnow().replace(microsecond=0) - timedelta(minutes=6)
    worker.beat(client, start, system=machine(), tailscaleIp="100.64.1.2")
    worker.beat(client, start + timedelta(minutes=5), system=machine(), tailscaleIp="100.64.1.2")

    shown = operator.get(f"/workers/{worker.wallet}").json
    expected = {
        "tailscaleIp": "100.64.1.2",
        "cpuCores": 4,
        "ramTotalGb": 16,
        "storageTotalGb": 200,
        "credits": 135,  # machine(): 135 per 300 s with one container
        "status": "HEALTHY",  # the heartbeat arrived just now
    }
    assert {key: shown[key] for key in expected} == expected
    assert shown["lastPing"] == shown["lastSeen"]
    [listed] = operator.get("/workers").json["items"]
    assert {key: listed[key] for key in expected} == expected


def metrics(client, wallet: str, **query):
    return client.get(f"/workers/{wallet}/metrics", query_string=query)


def test_metrics_are_one_point_per_heartbeat_of_the_last_hours_oldest_first(client, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    now = utcnow().replace(microsecond=0)
    minutes = (170, 90, 50, 45, 20)
    for m in minutes:
        system = machine(cpuUsagePercent=m / 10, ramUsedGb=m / 100)
        assert worker.beat(client, now - timedelta(minutes=m), system=system).status_code == 200

    def stamps(**query) -> list[str]:
        response = metrics(client, worker.wallet, **query)
        assert response.status_code == 200, response.json
        assert response.json["walletAddress"] == worker.wallet
        return [p["timestamp"] for p in response.json["points"]]

    at = [format_timestamp(now - timedelta(minutes=m)) for m in minutes]
    assert stamps() == stamps(hours=1) == at[2:]
    assert stamps(hours=2) == at[1:]
    assert stamps(hours=3) == stamps(hours=168) == at

    last = metrics(client, worker.wallet).json["points"][-1]
    assert last == {
        "timestamp": at[-1],
        "cpuCores": 4,
        "cpuUsagePercent": 2.0,
        "ramUsedGb": 0.2,
        "ramTotalGb": 16,
        "storageUsedGb": 50,
        "storageTotalGb": 200,
        "containerCount": 1,
        # 25 minutes at 113 per 300 s (2 % CPU is idle).
        "creditsEarned": 565,
    }


def test_a_heartbeat_without_machine_facts_is_a_point_without_them(client, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    now = utcnow()
    worker.beat(client, minutes_ago(5, now), containers=[])
    two = [{"containerName": "a"}, {"containerName": "b"}]
    worker.beat(client, minutes_ago(2, now), containers=two)
    points = metrics(client, worker.wallet).json["points"]
    assert [(p["cpuCores"], p["ramTotalGb"], p["containerCount"]) for p in points] == [
        (None, None, 0),
        (None, None, 2),
    ]
    # The original flat 100 per 300 s: 3 minutes earn 60.
    assert [p["creditsEarned"] for p in points] == [0, 60]


def test_metrics_past_the_limit_are_thinned_evenly_keeping_the_newest(client, dbconn):
    wallet = Worker.create(wallet_address=new_wallet()).wallet_address
    now = utcnow().replace(microsecond=0)
    # Ten points, five minutes apart, the newest 5 minutes ago; and one older than the hour.
    at = [now - timedelta(minutes=5 * (10 - i)) for i in range(10)]
    for ts in [now - timedelta(minutes=70), *at]:
        WorkerMetric.create(worker=wallet, timestamp=ts, container_count=1, credits_millis=0)
    stamps = [format_timestamp(ts) for ts in at]

    whole = metrics(client, wallet).json
    assert ([p["timestamp"] for p in whole["points"]], whole["total"]) == (stamps, 10)
    # Three of ten: every fourth from the newest, oldest first, across the whole hour.
    cut = metrics(client, wallet, limit=3).json
    assert [p["timestamp"] for p in cut["points"]] == [stamps[1], stamps[5], stamps[9]]
    assert cut["total"] == 10
    assert [p["timestamp"] for p in metrics(client, wallet, limit=5).json["points"]] == stamps[1::2]
    assert [p["timestamp"] for p in metrics(client, wallet, limit=1).json["points"]] == stamps[9:]

    # The dialect's plain array holds the same points and counts them in a header that a
    # browser on another origin may read.
    dialect = client.get(f"/api/v1/workers/{wallet}/metrics", query_string={"limit": 3})
    assert [p["timestamp"] for p in dialect.json] == [stamps[1], stamps[5], stamps[9]]
    assert dialect.headers["X-Total-Count"] == "10"
    assert "X-Total-Count" in dialect.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("limit", ["0", "2001", "x"])
def test_metrics_beyond_the_maximum_of_points_is_a_bad_request(client, dbconn, limit):
    known = Worker.create(wallet_address=new_wallet()).wallet_address
    for path in (
        f"/workers/{known}",
        f"/api/v1/workers/{known}",
        f"/api/v1/workers/{new_wallet()}",
    ):
        response = client.get(f"{path}/metrics", query_string={"limit": limit})
        assert response.status_code == 400, path
        assert "query parameter limit must be" in response.json["error"]


@pytest.mark.parametrize("hours", ["0", "169", "-1", "1.5", "x", ""])
def test_metrics_hours_outside_1_to_168_is_a_bad_request(client, hours):
    worker = FakeWorker()
    worker.enroll(client)
    response = metrics(client, worker.wallet, hours=hours)
    assert response.status_code == 400
    assert "hours" in response.json["error"]


@pytest.mark.parametrize("path, code", [("0x" + "1" * 40, 404), ("0x123", 400)])
def test_the_metrics_and_status_of_an_unknown_or_invalid_wallet_are_refused(client, path, code):
    for suffix in ("/metrics", "/status"):
        assert client.get(f"/workers/{path}{suffix}").status_code == code


# --- reads that stay fast as the fleet and its history grow -------------------------------


def wallets_listed(client, path: str, **query) -> tuple[list[str], dict]:
    answer = client.get(path, query_string=query).json
    items = answer["items"] if isinstance(answer, dict) else answer
    return [w["walletAddress"] for w in items], answer


@pytest.fixture
def fleet(dbconn) -> list[str]:
    """Five workers, in wallet order."""
    wallets = sorted(new_wallet() for _ in range(5))
    for address in wallets:
        Worker.create(wallet_address=address)
    return wallets


def test_workers_page_by_wallet_after_the_previous_pages_next(client, fleet):
    listed, page = wallets_listed(client, "/workers", limit=2, after=fleet[0])
    assert listed == fleet[1:3]
    # Neither rows skipped nor a count: a page by wallet says only whether more follow.
    assert page == {"items": page["items"], "limit": 2, "next": fleet[2]}
    listed, page = wallets_listed(client, "/workers", limit=2, after=page["next"])
    assert (listed, page["next"]) == (fleet[3:5], None)
    # A wallet that is no worker's still places the page; past the last there is none.
    gone = fleet[2][:-1] + ("0" if fleet[2][-1] != "0" else "1")
    assert wallets_listed(client, "/workers", after=gone)[0] == [w for w in fleet if w > gone]
    assert wallets_listed(client, "/workers", after="0x" + "f" * 40) == (
        [],
        {
            "items": [],
            "limit": 50,
            "next": None,
        },
    )


def test_an_offset_page_keeps_its_total_and_leads_on_by_wallet(client, fleet):
    listed, page = wallets_listed(client, "/workers", limit=2)
    assert (listed, page["total"], page["offset"], page["next"]) == (fleet[:2], 5, 0, fleet[1])
    assert wallets_listed(client, "/workers", limit=2, after=page["next"])[0] == fleet[2:4]
    listed, page = wallets_listed(client, "/workers", limit=2, offset=3)
    assert (listed, page["next"]) == (fleet[3:], None)
    assert wallets_listed(client, "/workers", offset=9)[1]["next"] is None


@pytest.mark.parametrize(
    "query, message",
    [
        ({"after": "0x123"}, "after:"),
        ({"after": "0x" + "1" * 40, "offset": "0"}, "give one of them"),
        ({"after": "0x" + "1" * 40, "limit": "0"}, "limit must be from 1"),
    ],
)
def test_a_bad_workers_cursor_is_a_bad_request(client, fleet, query, message):
    for path in ("/workers", "/api/v1/workers"):
        response = client.get(path, query_string=query)
        assert response.status_code == 400 and message in response.json["error"], path


def test_the_dialects_worker_array_pages_by_wallet_too(client, fleet):
    assert wallets_listed(client, "/api/v1/workers", limit=2, after=fleet[1])[0] == fleet[2:4]
    assert wallets_listed(client, "/api/v1/workers", limit=2, offset=1)[0] == fleet[1:3]
    assert wallets_listed(client, "/api/v1/workers")[0] == fleet


def test_the_dialects_worker_array_says_in_headers_what_it_left_out(client, fleet):
    by_offset = client.get("/api/v1/workers", query_string={"limit": 2, "offset": 1})
    assert by_offset.headers["X-Total-Count"] == "5"
    assert by_offset.headers["Link"] == '</api/v1/workers?limit=2&offset=3>; rel="next"'
    last = client.get("/api/v1/workers", query_string={"limit": 2, "offset": 3})
    assert (last.headers["X-Total-Count"], last.headers.get("Link")) == ("5", None)
    # Paged by wallet: not counted (that would read the fleet), but where to go on.
    by_wallet = client.get("/api/v1/workers", query_string={"limit": 2, "after": fleet[0]})
    assert "X-Total-Count" not in by_wallet.headers
    assert by_wallet.headers["Link"] == f'</api/v1/workers?limit=2&after={fleet[2]}>; rel="next"'
    end = client.get("/api/v1/workers", query_string={"limit": 2, "after": fleet[2]})
    assert [w["walletAddress"] for w in end.json] == fleet[3:] and "Link" not in end.headers
    too_many = client.get("/api/v1/workers", query_string={"limit": 1001})
    assert too_many.status_code == 400
    assert too_many.json["error"] == "query parameter limit must be from 1 to 1000"


US = timedelta(microseconds=1)
HOUR, HALF = 3600 * 10**6, 1800 * 10**6  # microseconds


@pytest.fixture
def long_history(dbconn) -> tuple[Worker, datetime]:
    """A worker with 150 one-hour records a day apart, the first at T and each ending a
    microsecond later than the hour (so the sums are checked to the microsecond), and an
    open window from T+200d to T+200d+30min."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    worker = Worker.create(wallet_address=new_wallet())
    UptimeRecord.insert_many(
        [
            {
                "worker": worker.wallet_address,
                "time_from": start + timedelta(days=day),
                "time_to": start + timedelta(days=day, hours=1) + US,
            }
            for day in range(150)
        ]
    ).execute()
    window = start + timedelta(days=200)
    OpenWindow.create(worker=worker, start_time=window, end_time=window + timedelta(minutes=30))
    return worker, start


def uptime_of(client, worker: Worker, start: datetime, end: datetime, **query) -> dict:
    query = {"from": format_timestamp(start), "to": format_timestamp(end), **query}
    response = client.get(f"/workers/{worker.wallet_address}/uptime", query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def test_uptime_totals_count_every_record_in_the_range_and_list_a_page(client, long_history):
    worker, t = long_history
    # From the middle of day 10's record to the middle of day 139's: the second half of the
    # first (half an hour and its microsecond), 128 whole ones (an hour and a microsecond
    # each), the first half of the last, and no open window.
    start, end = t + timedelta(days=10, minutes=30), t + timedelta(days=139, minutes=30)
    answer = uptime_of(client, worker, start, end)
    assert answer["recordCount"] == 130
    assert answer["totalSeconds"] == (HALF + 1 + 128 * (HOUR + 1) + HALF) / 10**6
    assert answer["uptimeFraction"] == round(answer["totalSeconds"] / (129 * 86400), 6)
    assert len(answer["records"]) == 100  # the default page
    assert answer["records"][0] == {
        "timeFrom": format_timestamp(t + timedelta(days=10)),
        "timeTo": format_timestamp(t + timedelta(days=10, hours=1) + US),
    }
    assert answer["next"] == answer["records"][-1]["timeTo"]

    rest = uptime_of(client, worker, start, end, after=answer["next"])
    assert [r["timeFrom"] for r in rest["records"]] == [
        format_timestamp(t + timedelta(days=day)) for day in range(110, 140)
    ]
    assert rest["next"] is None
    assert (rest["recordCount"], rest["totalSeconds"]) == (130, answer["totalSeconds"])


def test_uptime_totals_clip_the_open_window_and_pages_walk_every_record(client, long_history):
    worker, t = long_history
    start, end = t - timedelta(days=1), t + timedelta(days=200, minutes=10)
    seen, after = [], None
    while True:
        page = uptime_of(
            client, worker, start, end, limit=40, **({"after": after} if after else {})
        )
        seen += page["records"]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 150 == page["recordCount"]
    assert len({r["timeFrom"] for r in seen}) == 150
    # Every record whole, and 10 of the open window's 30 minutes.
    assert page["totalSeconds"] == (150 * (HOUR + 1) + 10 * 60 * 10**6) / 10**6
    assert page["openWindow"]["startTime"] == format_timestamp(t + timedelta(days=200))


def test_uptime_of_a_range_without_records_is_zero(client, long_history):
    worker, t = long_history
    answer = uptime_of(client, worker, t + timedelta(days=160), t + timedelta(days=161))
    assert (answer["records"], answer["recordCount"], answer["next"]) == ([], 0, None)
    assert answer["totalSeconds"] == 0


@pytest.mark.parametrize(
    "query, message",
    [
        ({"limit": "0"}, "limit must be from 1 to 1000"),
        ({"limit": "1001"}, "limit must be from 1 to 1000"),
        ({"after": "tomorrow"}, "after must be an RFC 3339"),
    ],
)
def test_a_bad_uptime_page_is_a_bad_request(client, long_history, query, message):
    worker, _ = long_history
    response = client.get(f"/workers/{worker.wallet_address}/uptime", query_string=query)
    assert response.status_code == 400 and message in response.json["error"]


@pytest.mark.parametrize("version", [(3, 37, 0), (3, 38, 0)])
def test_uptime_totals_are_exact_with_or_without_sqlites_unixepoch(
    client, long_history, monkeypatch, version
):
    # SQLite before 3.38 has no unixepoch(): the sums fall back to strftime('%s').
    monkeypatch.setattr(sqlite3, "sqlite_version_info", version)
    worker, t = long_history
    answer = uptime_of(client, worker, t, t + timedelta(days=150))
    assert answer["totalSeconds"] == 150 * (HOUR + 1) / 10**6
