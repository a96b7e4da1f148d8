"""Workers: the read routes the UI uses for status, uptime and containers. Enrolling them is
collector/uptime/enrollment.py."""

from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
from flask import Blueprint, current_app, request
from msgspec import UNSET, Meta, UnsetType
from msgspec.structs import asdict
from peewee import Expression, fn

from collector.errors import ApiError
from collector.identity.access import may_see_private
from collector.identity.signatures import PUBLIC_KEY_PATTERN
from collector.store.db import first_page
from collector.store.models import (
    OpenWindow,
    Worker,
    WorkerContainer,
    WorkerMetric,
    credits,
)
from collector.uptime.heartbeat_body import IPV4
from collector.uptime.online import heard_within, online_since
from collector.uptime.pings import DEAD, HEALTHY, UNKNOWN, WARNING
from collector.uptime.states import DIALECT, PAID, State, state_of
from collector.uptime.windows import MAX_RECORDS_PAGE, RECORDS_PAGE, RangeUptime, Window, uptime
from collector.web.api import (
    DEFAULT_PAGE,
    MAX_PAGE,
    paginated,
    query_int,
    settings,
    wallet,
)
from collector.web.schema import (
    PAGE,
    WALLET_IN_PATH,
    Answer,
    Reply,
    Timestamp,
    Wallet,
    answer,
    operation,
    wallet_ref,
)
from collector.web.schema import (
    limit as limit_parameter,
)
from collector.web.schema import (
    query as parameter,
)
from protocol import ProtocolError
from protocol.heartbeat import MAX_GB, MAX_TEXT
from protocol.times import format_timestamp, parse_timestamp, utcnow

bp = Blueprint("workers", __name__, url_prefix="/workers")


def is_online(worker: Worker, now: datetime) -> bool:
    """Online while the last heartbeat is within the configured gap (collector/uptime/online.py)."""
    return heard_within(worker, now, settings().gap)


def online(now: datetime) -> Expression:
    """is_online as a query condition, for counting a fleet without loading it."""
    return online_since(now, settings().gap)


# The longest series the metrics route serves, in hours.
MAX_METRICS_HOURS = 7 * 24
# The points one metrics answer holds, by default and at most: a week of heartbeats every
# two minutes is about 5,000 points (1 MB); 500 draw a chart as wide as a screen.
METRICS_POINTS = 500
MAX_METRICS_POINTS = 2000


def last_ping(worker: Worker) -> datetime | None:
    """The last sign of life: a ping (written late by collector/uptime/pings.py, so this
    process's own pending one counts too) or the arrival of a heartbeat."""
    pending = current_app.extensions["tassium.pings"].latest(worker.wallet_address)
    signs = [t for t in (worker.last_ping_at, pending, worker.last_seen_at) if t is not None]
    return max(signs, default=None)


# --- the answers ---------------------------------------------------------------------------

Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Gigabytes = Annotated[float, Meta(ge=0, le=MAX_GB)]
Credits = Annotated[
    float,
    Meta(ge=0, description="Credits, exact to the thousandth (a whole number when whole)"),
]


def _time(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


class Liveness(Answer, kw_only=True):
    state: Annotated[
        State,
        Meta(
            description="The one status model (collector/uptime/states.py): up (paid), late "
            "(silent for 3 ping intervals, its heartbeat still within the gap), degraded "
            "(Docker unavailable: counted as downtime), down (no heartbeat within the gap), "
            "never_seen"
        ),
    ]
    paid: Annotated[bool, Meta(description="whether its time is being paid now: up or late")]
    status: Annotated[
        Literal[HEALTHY, WARNING, DEAD, UNKNOWN],
        Meta(
            description="The original worker client's label, from state: up HEALTHY, late "
            "and degraded WARNING, down DEAD, never_seen UNKNOWN"
        ),
    ]
    lastPing: Annotated[  # noqa: N815 - the API's names
        Timestamp | None, Meta(description="The last ping or heartbeat's arrival")
    ]

    @classmethod
    def of(cls, worker: Worker, now: datetime) -> "Liveness":
        ping = last_ping(worker)
        config = settings()
        state = state_of(worker, ping, now, gap=config.gap, ping_interval=config.ping_interval)
        return cls(state=state, paid=PAID[state], status=DIALECT[state], lastPing=_time(ping))


class WorkerStatus(Liveness, kw_only=True):
    walletAddress: Wallet  # noqa: N815


class WorkerSummary(Liveness, kw_only=True):
    """What every reader of a worker gets: our routes and the /api/v1 dialect."""

    walletAddress: Wallet  # noqa: N815
    createdAt: Timestamp | None  # noqa: N815
    enrolled: bool
    publicKey: (  # noqa: N815
        Annotated[
            str,
            Meta(pattern=PUBLIC_KEY_PATTERN, description="The enrolled key, base64"),
        ]
        | None
    )
    enrolledAt: Timestamp | None  # noqa: N815
    hostname: Text | None
    agentVersion: Text | None  # noqa: N815
    dockerAvailable: bool | None  # noqa: N815
    online: bool
    lastHeartbeat: Timestamp | None  # noqa: N815
    lastSeen: Timestamp | None  # noqa: N815
    tailscaleIp: Annotated[str, Meta(pattern=f"^{IPV4}$")] | None  # noqa: N815
    cpuCores: Annotated[int, Meta(ge=1)] | None  # noqa: N815
    ramTotalGb: Gigabytes | None  # noqa: N815
    storageTotalGb: Gigabytes | None  # noqa: N815
    # All the machine runs: GET /workers/<wallet>/containers lists those it reported.
    containerCount: Annotated[  # noqa: N815
        int | None,
        Meta(description="How many containers the machine said it runs (it lists at most 100)"),
    ]
    credits: Credits

    @classmethod
    def of(cls, worker: Worker, now: datetime, *, private: bool | None = None) -> "WorkerSummary":
        """The machine's network details (hostname, addresses, key) are null unless
        ``private`` (by default: the caller is the wallet's session or the operator)."""
        if private is None:
            private = may_see_private(worker.wallet_address)
        return cls(
            walletAddress=worker.wallet_address,
            createdAt=_time(worker.created_at),
            enrolled=worker.public_key is not None,
            publicKey=worker.public_key if private else None,
            enrolledAt=_time(worker.enrolled_at),
            hostname=worker.hostname if private else None,
            agentVersion=worker.agent_version,
            dockerAvailable=worker.docker_available,
            online=is_online(worker, now),
            lastHeartbeat=_time(worker.last_heartbeat_at),
            lastSeen=_time(worker.last_seen_at),
            tailscaleIp=worker.tailscale_ip if private else None,
            cpuCores=worker.cpu_cores,
            ramTotalGb=worker.ram_total_gb,
            storageTotalGb=worker.storage_total_gb,
            containerCount=worker.container_total,
            credits=credits(worker.credits_millis),
            **asdict(Liveness.of(worker, now)),
        )


class ListedContainer(Answer, kw_only=True):
    """A container as the worker's last heartbeat listed it."""

    containerName: Annotated[Text, Meta(min_length=1)]  # noqa: N815
    port: Text
    id: Text | None
    image: Text | None
    state: Text | None
    health: Text | None
    cpuPercent: Annotated[  # noqa: N815
        float | None,
        Meta(description="Average CPU use since the agent's previous sample (100 per core)"),
    ]
    memUsageMb: Annotated[float | None, Meta(description="Memory in use, MB")]  # noqa: N815

    @classmethod
    def of(cls, row: WorkerContainer) -> "ListedContainer":
        return cls(
            containerName=row.container_name,
            port=row.port,
            id=row.container_id,
            image=row.image,
            state=row.state,
            health=row.health,
            cpuPercent=row.cpu_percent,
            memUsageMb=row.mem_usage_mb,
        )


class WorkerDetail(WorkerSummary, kw_only=True):
    """One worker with its open window and containers."""

    openWindow: Window | None  # noqa: N815
    containers: list[ListedContainer]


class Containers(Answer, kw_only=True):
    walletAddress: Wallet  # noqa: N815
    containers: list[ListedContainer]


class MetricPoint(Answer, kw_only=True):
    """One accepted heartbeat: the machine as reported, and the credit it earned."""

    timestamp: Timestamp
    cpuCores: Annotated[int, Meta(ge=1)] | None  # noqa: N815
    cpuUsagePercent: (  # noqa: N815
        Annotated[float, Meta(ge=0, le=100, description="Of the whole machine")] | None
    )
    ramUsedGb: Gigabytes | None  # noqa: N815
    ramTotalGb: Gigabytes | None  # noqa: N815
    storageUsedGb: Gigabytes | None  # noqa: N815
    storageTotalGb: Gigabytes | None  # noqa: N815
    containerCount: Annotated[int, Meta(ge=0)]  # noqa: N815
    creditsEarned: Annotated[Credits, Meta(description="What the uptime before it earned")]  # noqa: N815

    @classmethod
    def of(cls, row: WorkerMetric) -> "MetricPoint":
        return cls(
            timestamp=format_timestamp(row.timestamp),
            cpuCores=row.cpu_cores,
            cpuUsagePercent=row.cpu_usage_percent,
            ramUsedGb=row.ram_used_gb,
            ramTotalGb=row.ram_total_gb,
            storageUsedGb=row.storage_used_gb,
            storageTotalGb=row.storage_total_gb,
            containerCount=row.container_count,
            creditsEarned=credits(row.credits_millis),
        )


class Metrics(Answer, kw_only=True):
    walletAddress: Wallet  # noqa: N815
    points: Annotated[
        list[MetricPoint],
        Meta(
            description="One per accepted heartbeat, oldest first; past the limit, every n-th "
            "from the newest"
        ),
    ]
    total: Annotated[int, Meta(ge=0, description="the points in the hours asked, listed or not")]


class Uptime(RangeUptime, kw_only=True):
    walletAddress: Wallet  # noqa: N815
    timeFrom: Timestamp  # noqa: N815
    timeTo: Timestamp  # noqa: N815


class WorkerPage(Answer, kw_only=True):
    """Paged by offset (with the total) or, given after, by wallet (neither total nor
    offset)."""

    items: list[WorkerSummary]
    total: Annotated[int, Meta(ge=0, description="with offset paging")] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)]
    offset: Annotated[int, Meta(ge=0, description="with offset paging")] | UnsetType = UNSET
    next: Annotated[
        Wallet | None, Meta(description="pass as after for the next page; null on the last")
    ]


def liveness(worker: Worker, now: datetime) -> dict:
    """``Liveness`` as a dict, for the /api/v1 dialect."""
    return asdict(Liveness.of(worker, now))


def summary(worker: Worker, now: datetime, *, private: bool | None = None) -> dict:
    """``WorkerSummary`` as a dict, for those who add to it (the dashboard, enrollment, the
    /api/v1 dialect)."""
    return asdict(WorkerSummary.of(worker, now, private=private))


def find_worker(address: str) -> Worker | None:
    return Worker.get_or_none(Worker.wallet_address == wallet(address, "wallet"))


def metric_points(worker: Worker, now: datetime) -> tuple[list[MetricPoint], int]:
    """The points of the last ``?hours=`` hours (1 by default), oldest first, at most
    ``?limit=`` of them; and how many the range holds.

    Past the limit the points are thinned evenly over the range (every n-th, counted from
    the newest) rather than cut to the newest: a chart of 168 hours keeps its whole width,
    where the newest 500 points alone would be the last day or so, and the newest point, the
    live chart's "now", is always there. A kept point's creditsEarned is still its own
    heartbeat's; what a period earned is the worker's credits and the reports."""
    hours = query_int("hours", 1, 1, MAX_METRICS_HOURS)
    limit = query_int("limit", METRICS_POINTS, 1, MAX_METRICS_POINTS)
    in_range = (WorkerMetric.worker == worker) & (
        WorkerMetric.timestamp >= now - timedelta(hours=hours)
    )
    total = WorkerMetric.select().where(in_range).count()
    query = WorkerMetric.select().where(in_range)
    step = -(-total // limit)  # the smallest stride that keeps at most limit points
    if step > 1:
        newest_first = [WorkerMetric.timestamp.desc(), WorkerMetric.id.desc()]
        ranked = WorkerMetric.select(
            WorkerMetric.id, fn.ROW_NUMBER().over(order_by=newest_first).alias("position")
        ).where(in_range)
        # Every step-th from the newest: (position - 1) divisible by step, in integer
        # division (Peewee's % is LIKE, and a literal % would be a placeholder to psycopg2).
        skipped = ranked.c.position - 1
        query = (
            WorkerMetric.select()
            .join(ranked, on=WorkerMetric.id == ranked.c.id)
            .where(skipped == skipped / step * step)
        )
    points = query.order_by(WorkerMetric.timestamp, WorkerMetric.id)
    return [MetricPoint.of(point) for point in points], total


def metrics(worker: Worker, now: datetime) -> tuple[list[dict], int]:
    """``metric_points`` as dicts, for the /api/v1 dialect."""
    points, total = metric_points(worker, now)
    return [asdict(point) for point in points], total


def _get_worker(address: str) -> Worker:
    worker = Worker.get_or_none(Worker.wallet_address == wallet(address, "wallet"))
    if worker is None:
        raise ApiError(404, f"no worker with wallet {address}")
    return worker


def listed_containers(worker: Worker) -> list[ListedContainer]:
    query = (
        WorkerContainer.select()
        .where(WorkerContainer.worker == worker)
        .order_by(WorkerContainer.container_name, WorkerContainer.id)
    )
    return [ListedContainer.of(c) for c in query]


def containers(worker: Worker) -> list[dict]:
    """``listed_containers`` as dicts, for the /api/v1 dialect."""
    return [asdict(c) for c in listed_containers(worker)]


def after_cursor() -> str | None:
    """The wallet in ``?after=``: a page of workers after it, by wallet. A million workers
    deep, that is one range read of the primary key, where ``?offset=`` reads and skips every
    row before the page; both at once is a 400."""
    if "after" not in request.args:
        return None
    if "offset" in request.args:
        raise ApiError(400, "after and offset are two ways of paging: give one of them")
    return wallet(request.args["after"], "after")


_TIME = msgspec.json.schema(Timestamp)
_ERRORS = (400, 404, 503)


@bp.get("")
@operation(
    summary="Every worker, by wallet",
    parameters=(
        *PAGE,
        parameter(
            "after",
            wallet_ref(),
            "the page after this wallet (a page's next), instead of offset: no rows skipped "
            "and no total counted, however large the fleet",
        ),
    ),
    replies={200: Reply("A page", WorkerPage)},
    errors=(400, 503),
)
def list_workers():
    now = utcnow()
    query = Worker.select().order_by(Worker.wallet_address)
    after = after_cursor()
    if after is not None:
        limit = query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        page, more = first_page(query.where(Worker.wallet_address > after).limit, limit)
        last = page[-1].wallet_address if more else None
        items = [WorkerSummary.of(w, now) for w in page]
        return answer(WorkerPage(items=items, limit=limit, next=last))
    # Offset paging as before, with its total; next lets a client go on by wallet instead.
    page = paginated(query, lambda w: WorkerSummary.of(w, now))
    items = page["items"]
    more = page["offset"] + len(items) < page["total"]
    return answer(WorkerPage(**page, next=items[-1].walletAddress if more and items else None))


@bp.get("/<address>")
@operation(
    summary="One worker with its open window and containers",
    parameters=(WALLET_IN_PATH,),
    replies={200: Reply("The worker", WorkerDetail)},
    errors=_ERRORS,
)
def get_worker(address: str):
    worker = _get_worker(address)
    window = OpenWindow.get_or_none(OpenWindow.worker == worker)
    return answer(
        WorkerDetail(
            **asdict(WorkerSummary.of(worker, utcnow())),
            openWindow=Window.of(window),
            containers=listed_containers(worker),
        )
    )


@bp.get("/<address>/containers")
@operation(
    summary="The containers of a worker's last heartbeat",
    parameters=(WALLET_IN_PATH,),
    replies={200: Reply("Its containers", Containers)},
    errors=_ERRORS,
)
def get_containers(address: str):
    worker = _get_worker(address)
    return answer(
        Containers(walletAddress=worker.wallet_address, containers=listed_containers(worker))
    )


@bp.get("/<address>/status")
@operation(
    summary="A worker's live status, from its last ping or heartbeat",
    parameters=(WALLET_IN_PATH,),
    replies={200: Reply("Its status", WorkerStatus)},
    errors=_ERRORS,
)
def get_status(address: str):
    worker = _get_worker(address)
    return answer(
        WorkerStatus(walletAddress=worker.wallet_address, **asdict(Liveness.of(worker, utcnow())))
    )


@bp.get("/<address>/metrics")
@operation(
    summary="A worker's metrics points (one per accepted heartbeat), oldest first",
    parameters=(
        WALLET_IN_PATH,
        parameter(
            "hours",
            {"type": "integer", "minimum": 1, "maximum": MAX_METRICS_HOURS, "default": 1},
            "the last this many hours",
        ),
        limit_parameter(
            METRICS_POINTS,
            MAX_METRICS_POINTS,
            "the most points answered: past it they are thinned evenly over the hours (every "
            "n-th, the newest kept); total counts them all",
        ),
    ),
    replies={200: Reply("Its points", Metrics)},
    errors=_ERRORS,
)
def get_metrics(address: str):
    worker = _get_worker(address)
    points, total = metric_points(worker, utcnow())
    return answer(Metrics(walletAddress=worker.wallet_address, points=points, total=total))


@bp.get("/<address>/uptime")
@operation(
    summary="Uptime records and seconds between from and to",
    parameters=(
        WALLET_IN_PATH,
        parameter("from", _TIME, "start; default: 24 hours before to"),
        parameter("to", _TIME, "end; default: now"),
        parameter("after", _TIME, "the records ending after this (a page's next)"),
        limit_parameter(
            RECORDS_PAGE,
            MAX_RECORDS_PAGE,
            "records a page lists; the totals count every record in the range",
        ),
    ),
    replies={200: Reply("Uptime in the range", Uptime)},
    errors=(400, 404, 422, 503),
)
def get_uptime(address: str):
    worker = _get_worker(address)
    now = utcnow()
    try:
        end = parse_timestamp(request.args["to"], "to") if "to" in request.args else now
        start = (
            parse_timestamp(request.args["from"], "from")
            if "from" in request.args
            else end - timedelta(days=1)
        )
        after = parse_timestamp(request.args["after"], "after") if "after" in request.args else None
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None
    if start >= end:
        raise ApiError(400, "from must be earlier than to")
    limit = query_int("limit", RECORDS_PAGE, 1, MAX_RECORDS_PAGE)
    return answer(
        Uptime(
            walletAddress=worker.wallet_address,
            timeFrom=format_timestamp(start),
            timeTo=format_timestamp(end),
            **asdict(uptime(worker, start, end, after=after, limit=limit)),
        )
    )
