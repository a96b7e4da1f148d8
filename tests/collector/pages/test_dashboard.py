"""The dashboard at ``/`` through the Flask client: what it lists, each worker's state (the one
status model) with those not paid first, the empty state's install line, the search by wallet,
its refusals, private pages, and the arithmetic of its status bars on hand-computed reports.
tests/collector/pages/test_dashboard_browser.py runs it in a real browser."""

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from collector.money.reports import (
    AGENT_SILENT,
    COLLECTOR_DOWN,
    DOCKER_UNAVAILABLE,
    Interval,
    Period,
    WorkerReport,
)
from collector.pages.dashboard import CONTAINERS_SHOWN, DOWNTIMES_SHOWN, PAGE_SIZE, segments
from collector.store.models import Worker
from collector.uptime.states import MEANING, STATES
from protocol.times import utcnow
from tests.conftest import operator_client
from tests.factories import CREATOR, FakeWorker, deployment, enroll_with_token, minutes_ago

API_TOKEN = "d" * 32


def listed(html: str) -> list[str]:
    """The wallets of the workers the page lists, in order."""
    return re.findall(r'<li class="worker" data-wallet="([^"]+)"', html)


def badges(html: str) -> list[str]:
    """Each listed worker's state badge, in order."""
    return re.findall(r'data-field="state"[^>]*>([^<]+)<', html)


def in_state(html: str, state: str) -> int:
    found = re.search(rf'data-state="{state}"><b>(\d+)</b>', html)
    assert found, state
    return int(found[1])


def count(html: str, status: str) -> int:
    found = re.search(rf'data-status="{status}"><b>(\d+)</b>', html)
    assert found, status
    return int(found[1])


def test_the_page_lists_the_workers_containers_and_deployments_created(client, operator):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    containers = [{"containerName": "api-7", "port": "0.0.0.0:8080->80/tcp", "image": "nginx"}]
    answer = worker.beat(client, containers=containers, hostname="<b>rig-1</b>")
    assert answer.status_code == 200
    silent = FakeWorker()
    assert silent.enroll(client).status_code == 201
    for name in ("app-a", "app-b", "app-c"):
        assert operator.post("/deployments", json=deployment(name=name)).status_code == 201
    moved = operator.patch("/deployments/app-b/status", json={"status": "processing"})
    assert moved.status_code == 200

    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.text
    # The worker never heard from is not paid: it comes first.
    assert listed(html) == [silent.wallet, worker.wallet]
    assert badges(html) == ["never seen — not paid", "up"]
    assert "rig-1" not in html  # a machine's hostname is for its owner and the operator
    assert "api-7" in html and "nginx" in html
    assert {s: in_state(html, s) for s in STATES} == {
        "up": 1,
        "late": 0,
        "degraded": 0,
        "down": 0,
        "never_seen": 1,
    }
    assert "online" not in html and "HEALTHY" not in html  # one status model, not three
    assert '<b data-field="credits">0 credits</b>' in html
    for name in ("app-a", "app-b", "app-c"):
        assert f"<td>{name}" in html
    counts = {s: count(html, s) for s in ("pending", "processing", "success", "failed")}
    assert counts == {"pending": 2, "processing": 1, "success": 0, "failed": 0}
    # 24 hourly and 30 daily segments per worker.
    assert html.count('class="seg ') == 2 * (24 + 30)
    # The live part alone, for the refresh: the same lists without the page around them.
    fragment = client.get("/?fragment=1").text
    assert "<html" not in fragment and "<script" not in fragment
    assert listed(fragment) == listed(html)


def test_a_private_dashboard_is_the_operators_and_shows_hostnames_escaped(make_app, dbconn):
    app = make_app(private_pages=True)
    client = app.test_client()
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    assert worker.beat(client, hostname="<b>rig-1</b>").status_code == 200
    assert client.get("/").status_code == 401
    html = operator_client(app).get("/").text
    assert "&lt;b&gt;rig-1&lt;/b&gt;" in html and "<b>rig-1" not in html  # escaped


def test_the_bar_shows_a_silence_and_its_cause(client, history):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    history.known(worker.wallet)
    now = utcnow()
    # Two windows with three hours of silence between them (the gap is 30 minutes), in
    # which the collector was running.
    history.collector_ran(minutes_ago(285, now), minutes_ago(105, now))
    for minutes in (300, 290, 100, 0):
        assert worker.beat(client, minutes_ago(minutes, now)).status_code == 200
    html = client.get("/").text
    assert "(agent silent)" in html
    assert re.search(r'class="seg (down|partial)"', html)
    figure = re.search(r'<span class="figure">([^<]+)</span>', html)[1]
    assert re.fullmatch(r"\d{1,2}\.\d % up", figure), figure  # one decimal, short of 100
    # Each bar says the time it covers: the last 24 hours, to the minute, and 30 days.
    axes = re.findall(r'data-field="axis"><span>([^<]+)</span><span>([^<]+)</span>', html)
    assert len(axes) == 2
    (day_start, day_end), (month_start, month_end) = axes
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", day_start)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", day_end)
    assert now.strftime("%Y-%m-%d %H:%M") <= day_end[:16]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", month_start) and month_end.endswith(" UTC")


def test_a_search_by_wallet_shows_that_worker_and_its_deployments(client, operator, dbconn):
    mine, other = FakeWorker(CREATOR.lower()), FakeWorker()
    assert enroll_with_token(mine.wallet, mine.public_key) == "enrolled"
    assert other.enroll(client).status_code == 201
    assert operator.post("/deployments", json=deployment(name="mine")).status_code == 201
    theirs = deployment(name="theirs", creator=other.wallet)
    assert operator.post("/deployments", json=theirs).status_code == 201

    html = client.get("/", query_string={"wallet": CREATOR}).text  # checksummed spelling
    assert listed(html) == [mine.wallet]
    assert "<td>mine" in html and "<td>theirs" not in html
    assert f'value="{CREATOR}"' in html  # the search box keeps what was typed
    nobody = client.get("/", query_string={"wallet": "0x" + "1" * 40})
    assert nobody.status_code == 200 and listed(nobody.text) == []
    assert "No workers with this wallet" in nobody.text
    assert "setup.sh" not in nobody.text  # a search found nothing: the fleet is not empty
    assert in_state(nobody.text, "up") == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"wallet": "0x1234"}, "wallet: "),
        ({"wallet": "<script>"}, "wallet: "),
        ({"after": "0"}, "after: "),
        ({"after": "<script>"}, "after: "),
    ],
)
def test_a_bad_query_is_a_clear_message_not_an_error_page(client, query, message):
    FakeWorker().enroll(client)
    answer = client.get("/", query_string=query)
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    alert = re.search(r'<p class="error" role="alert">([^<]+)</p>', answer.text)
    assert alert and alert[1].startswith(message)
    assert listed(answer.text) == []
    assert "<script>" not in answer.text.split("</form>")[0]  # the search box escapes it
    assert 'data-refresh="0"' in answer.text  # nothing to refresh until the query is fixed
    # Every section is narrowed, the deployments too, and the page says why.
    assert "<td>app-x" not in answer.text
    assert "None shown until the search above is a wallet." in answer.text
    assert "setup.sh" not in answer.text


def test_a_bad_wallet_filters_the_deployments_as_well_as_the_fleet(client, operator):
    assert operator.post("/deployments", json=deployment(name="app-x")).status_code == 201
    assert "<td>app-x" in client.get("/").text
    answer = client.get("/", query_string={"wallet": "0x1234"})
    assert answer.status_code == 400 and "<td>app-x" not in answer.text
    assert 'data-status="pending"' not in answer.text


def test_the_fleet_is_paged_by_wallet(client, dbconn):
    wallets = sorted(f"0x{n:040x}" for n in range(2 * PAGE_SIZE + 1))
    with dbconn.atomic():
        for address in wallets:
            Worker.create(wallet_address=address)
    first = client.get("/").text
    assert listed(first) == wallets[:PAGE_SIZE]
    assert f"{len(wallets)} workers" in first
    shown = f"Showing {PAGE_SIZE} of {len(wallets)} workers; search by wallet to narrow."
    assert shown in first
    # A search finds a worker on any page.
    found = client.get("/", query_string={"wallet": wallets[-1]}).text
    assert listed(found) == wallets[-1:] and "Showing" not in found
    assert f"after={wallets[PAGE_SIZE - 1]}" in first and "first page" not in first
    second = client.get("/", query_string={"after": wallets[PAGE_SIZE - 1]}).text
    assert listed(second) == wallets[PAGE_SIZE : 2 * PAGE_SIZE]
    assert "first page" in second and f"after={wallets[2 * PAGE_SIZE - 1]}" in second
    last = client.get("/", query_string={"after": wallets[2 * PAGE_SIZE - 1]}).text
    assert listed(last) == wallets[2 * PAGE_SIZE :]
    assert "next &rarr;" not in last
    # The live part refreshed in place keeps the page it is on.
    fragment = client.get("/", query_string={"after": wallets[-2], "fragment": "1"}).text
    assert listed(fragment) == wallets[-1:]


def test_the_page_runs_only_its_own_script_and_style(client):
    answer = client.get("/")
    policy = answer.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)[1]
    assert f'<script nonce="{nonce}">' in answer.text
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["Cache-Control"] == "no-store"
    # No CDN, no fonts: nothing loaded from elsewhere (the empty state's install line is
    # text to copy, not a resource).
    assert not re.search(r'(src|href|action)="https?:', answer.text)


def basic(password: str, user: str = "operator") -> dict:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def test_private_pages_ask_a_browser_for_the_api_token(make_app):
    client = make_app(api_token=API_TOKEN, private_pages=True).test_client()
    refused = client.get("/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Tassium"'
    assert client.get("/", headers=basic("not-the-token-at-all")).status_code == 401
    assert client.get("/?fragment=1").status_code == 401
    assert client.get("/", headers=basic(API_TOKEN)).status_code == 200
    assert client.get("/?fragment=1", headers=basic(API_TOKEN, user="")).status_code == 200
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    assert client.get("/", headers=bearer).status_code == 200


def test_without_private_pages_the_token_is_not_asked(make_app):
    client = make_app(api_token=API_TOKEN).test_client()
    assert client.get("/").status_code == 200


# --- the bars' arithmetic, on hand-made reports (no database) ------------------------------

T0 = datetime(2026, 11, 28, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def report(hours: int, uptime, downtime, observed=None) -> WorkerReport:
    period = Period(T0, at(hours), "test")
    return WorkerReport(
        "0x" + "a" * 40,
        period,
        observed or (T0, at(hours)),
        [(at(a), at(b)) for a, b in uptime],
        [Interval(at(a), at(b), cause) for a, b, cause in downtime],
    )


def test_segments_share_uptime_and_clip_downtime_to_each_hour():
    cut = segments(
        report(
            4,
            uptime=[(0, 1.5), (2.25, 2.75)],
            downtime=[(1.5, 2.25, AGENT_SILENT), (2.75, 3, COLLECTOR_DOWN)],
            observed=(T0, at(3)),
        ),
        4,
    )
    assert [(s.start, s.end) for s in cut] == [(at(h), at(h + 1)) for h in range(4)]
    assert [s.up_millis for s in cut] == [3_600_000, 1_800_000, 1_800_000, 0]
    assert [s.down_millis for s in cut] == [0, 1_800_000, 1_800_000, 0]
    assert [s.fraction for s in cut] == [1.0, 0.5, 0.5, None]
    assert [s.state for s in cut] == ["up", "partial", "partial", "none"]
    assert cut[1].downtime == (Interval(at(1.5), at(2), AGENT_SILENT),)
    assert cut[2].downtime == (
        Interval(at(2), at(2.25), AGENT_SILENT),
        Interval(at(2.75), at(3), COLLECTOR_DOWN),
    )
    assert cut[2].describe() == (
        "2026-11-28 02:00:00–03:00:00 UTC: 50.0 % up\n"
        "down 02:00:00–02:15:00 (agent silent)\n"
        "down 02:45:00–03:00:00 (collector down)"
    )
    assert cut[3].describe() == "2026-11-28 03:00:00–04:00:00 UTC: no data"


def test_a_segment_down_only_while_the_collector_was_is_not_the_workers_fault():
    cut = segments(
        report(
            3,
            uptime=[(2, 3)],
            downtime=[(0, 1, COLLECTOR_DOWN), (1, 1.5, DOCKER_UNAVAILABLE), (1.5, 2, AGENT_SILENT)],
        ),
        3,
    )
    assert [s.state for s in cut] == ["collector", "down", "up"]
    assert [s.fraction for s in cut] == [0.0, 0.0, 1.0]
    assert "(Docker unavailable)" in cut[1].describe()


def test_a_span_across_segments_and_past_the_period_is_cut_at_every_edge():
    # One uptime span from before the period to after it: every segment is wholly up.
    cut = segments(report(24, uptime=[(-5, 30)], downtime=[]), 24)
    assert {s.up_millis for s in cut} == {3_600_000}
    # A downtime of 26 hours from -1 h: clipped to the period, one piece per hour.
    cut = segments(report(24, uptime=[], downtime=[(-1, 25, AGENT_SILENT)]), 24)
    assert [len(s.downtime) for s in cut] == [1] * 24
    assert cut[0].downtime[0].start == T0 and cut[-1].downtime[0].end == at(24)


def test_a_month_in_thirty_segments_covers_it_exactly():
    february = Period.parse("2026-02", T0)  # 28 days
    cut = segments(WorkerReport("0x" + "b" * 40, february, None), 30)
    assert cut[0].start == february.start and cut[-1].end == february.end
    assert all(a.end == b.start for a, b in zip(cut, cut[1:], strict=False))
    assert sum((s.end - s.start for s in cut), timedelta()) == timedelta(days=28)
    assert {s.state for s in cut} == {"none"}


def test_a_worker_short_of_full_uptime_never_reads_100_percent():
    almost = report(1, uptime=[(0, 1 - 1 / 3600)], downtime=[(1 - 1 / 3600, 1, AGENT_SILENT)])
    (segment,) = segments(almost, 1)
    assert segment.describe().endswith("99.9 % up\ndown 00:59:59–01:00:00 (agent silent)")


def test_a_segment_lists_its_first_downtimes_and_counts_the_rest():
    # Down the first 6 minutes of every 12 in an hour: five downtimes in one segment.
    flapping = [(i / 5, i / 5 + 0.1, AGENT_SILENT) for i in range(5)]
    up = [(i / 5 + 0.1, i / 5 + 0.2) for i in range(5)]
    (segment,) = segments(report(1, uptime=up, downtime=flapping), 1)
    assert len(segment.downtime) == 5 and segment.fraction == 0.5
    assert segment.describe() == (
        "2026-11-28 00:00:00–01:00:00 UTC: 50.0 % up\n"
        "down 00:00:00–00:06:00 (agent silent)\n"
        "down 00:12:00–00:18:00 (agent silent)\n"
        "down 00:24:00–00:30:00 (agent silent)\n"
        "and 2 more times down"
    )
    assert DOWNTIMES_SHOWN == 3


def test_a_workers_row_lists_its_first_containers_and_counts_them_all(client):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    held = [{"containerName": f"c-{n:02}", "port": ""} for n in range(CONTAINERS_SHOWN + 5)]
    assert worker.beat(client, containers=held).status_code == 200
    html = client.get("/").text
    assert f"{CONTAINERS_SHOWN + 5} containers (the first {CONTAINERS_SHOWN} listed)" in html
    assert re.findall(r"<tr><td>(c-\d+)</td>", html) == [
        f"c-{n:02}" for n in range(CONTAINERS_SHOWN)
    ]
    # The JSON route lists them all.
    listed = client.get(f"/workers/{worker.wallet}/containers").json["containers"]
    assert len(listed) == CONTAINERS_SHOWN + 5


# --- the one status model ------------------------------------------------------------------


def test_each_worker_shows_one_state_those_not_paid_first_and_since_when(client):
    now = utcnow()
    up, degraded, down, late = (FakeWorker() for _ in range(4))
    for worker in (up, degraded, down, late):
        assert worker.enroll(client).status_code == 201
    assert up.beat(client).status_code == 200
    assert degraded.beat(client, agent={"dockerAvailable": False}).status_code == 200
    assert down.beat(client, minutes_ago(60, now)).status_code == 200
    # Heard from ten minutes ago (within the 30-minute gap), and silent since.
    assert late.beat(client, minutes_ago(10, now)).status_code == 200
    Worker.update(last_seen_at=minutes_ago(10, now), last_ping_at=None).where(
        Worker.wallet_address == late.wallet
    ).execute()

    html = client.get("/").text
    assert listed(html) == [down.wallet, degraded.wallet, late.wallet, up.wallet]
    assert badges(html) == [
        "down — not paid",
        "degraded — Docker unavailable, not paid",
        "late",
        "up",
    ]
    since = re.findall(r'data-field="since">since ([^<]+)<', html)
    down_at = Worker.get_by_id(down.wallet).last_heartbeat_at
    assert since[0] == down_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert len(since) == 3  # an up worker has no "since"
    assert {s: in_state(html, s) for s in STATES} == {
        "up": 1,
        "late": 1,
        "degraded": 1,
        "down": 1,
        "never_seen": 0,
    }
    # The same states as GET /workers answers.
    answered = {w["walletAddress"]: w["state"] for w in client.get("/workers").json["items"]}
    assert answered == {
        up.wallet: "up",
        degraded.wallet: "degraded",
        down.wallet: "down",
        late.wallet: "late",
    }


def test_the_legend_says_what_each_state_means(client):
    html = client.get("/").text
    legend = html.split('id="states-legend"')[1].split("</details>")[0]
    found = re.findall(r'<dt data-state="(\w+)">.*?</dt><dd>([^<]+)</dd>', legend)
    assert [state for state, _ in found] == list(STATES)
    assert dict(found) == {state: words for state, words in MEANING.items()}
    # The legend is the page's, not refreshed with the live part.
    assert "states-legend" not in client.get("/?fragment=1").text


# --- with no workers -----------------------------------------------------------------------


def test_an_empty_fleet_shows_the_install_line_to_copy(client):
    html = client.get("/").text
    line = re.search(r'<code id="install-line">([^<]+)</code>', html)
    assert line, "no install line"
    assert line[1] == "curl -fsSL &#39;http://localhost/setup.sh?wallet=0x…&#39; | sh"
    assert "in place of <code>0x…</code>" in html
    assert "No workers." not in html
    assert "install-line" in client.get("/?fragment=1").text  # refreshed with the live part


def test_the_install_line_is_the_one_the_collector_serves(make_app, dbconn):
    client = make_app(
        public_url="https://collector.example", enrollment_policy="token", wallet_format="stellar"
    ).test_client()
    html = client.get("/").text
    line = re.search(r'<code id="install-line">([^<]+)</code>', html)[1]
    expected = "curl -fsSL 'https://collector.example/setup.sh?wallet=G…&token=tsk_…' | sh"
    assert line == expected.replace("'", "&#39;").replace("&token", "&amp;token")
    assert "in place of <code>tsk_…</code>" in html


def test_an_install_line_this_collector_cannot_serve_says_why(make_app, dbconn):
    client = make_app(public_url="http://collector.example").test_client()
    html = client.get("/").text
    assert "install-line" not in html
    assert "plain http" in html and "insecure_http_installs" in html


def test_with_one_worker_the_install_line_is_gone(client):
    assert FakeWorker().enroll(client).status_code == 201
    assert "install-line" not in client.get("/").text


def test_who_is_down_right_now_is_said_first_whatever_page_they_are_on(client, dbconn):
    now = utcnow()
    # A page and more of workers up, and the one down and the one degraded sorted last by
    # wallet: on the fleet's last page, but named at the top of the first.
    wallets = [f"0x{n:040x}" for n in range(PAGE_SIZE + 2)]
    with dbconn.atomic():
        for address in wallets[:-2]:
            Worker.create(
                wallet_address=address, last_heartbeat_at=now, last_seen_at=now, last_ping_at=now
            )
        Worker.create(wallet_address=wallets[-2], last_heartbeat_at=minutes_ago(90, now))
        Worker.create(
            wallet_address=wallets[-1],
            last_heartbeat_at=minutes_ago(1, now),
            last_seen_at=now,
            docker_available=False,
        )

    html = client.get("/").text

    assert wallets[-1] not in listed(html) and wallets[-2] not in listed(html)
    attention = re.search(r'<div class="attention" id="attention">(.*?)</div>', html, re.S)[1]
    named = re.findall(r'<li data-wallet="([^"]+)"', attention)
    # The latest to stop first: the degraded one heard a minute ago, then the down one.
    assert named == [wallets[-1], wallets[-2]]
    down_at = Worker.get_by_id(wallets[-2]).last_heartbeat_at
    assert f"since {down_at.strftime('%Y-%m-%d %H:%M:%S UTC')}" in attention
    assert "down — not paid" in attention and "Docker unavailable, not paid" in attention
    # A fleet all up has nothing to say there.
    Worker.delete().where(Worker.wallet_address.in_(wallets[-2:])).execute()
    assert 'id="attention"' not in client.get("/").text
