"""Workers: the read routes the UI uses for status, uptime and containers. Enrolling them is
collector/uptime/enrollment.py."""

from datetime import datetime, timedelta

from flask import Blueprint, current_app, jsonify, request
from peewee import Expression, fn

from collector.errors import ApiError
from collector.identity.access import may_see_private
from collector.store.db import first_page
from collector.store.models import (
    OpenWindow,
    Worker,
    WorkerContainer,
    WorkerMetric,
    credits,
)
from collector.uptime.online import heard_within, online_since
from collector.uptime.pings import live_status
from collector.uptime.windows import MAX_RECORDS_PAGE, RECORDS_PAGE, uptime
from collector.web.api import DEFAULT_PAGE, MAX_PAGE, paginated, query_int, settings, wallet
from protocol import ProtocolError
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


def liveness(worker: Worker, now: datetime) -> dict:
    ping = last_ping(worker)
    return {
        "status": live_status(ping, now, settings().ping_interval),
        "lastPing": format_timestamp(ping) if ping is not None else None,
    }


def summary(worker: Worker, now: datetime, *, private: bool | None = None) -> dict:
    """What every reader of a worker gets: our routes and the /api/v1 dialect. The machine's
    network details (hostname, addresses, key) are null unless ``private`` (by default: the
    caller is the wallet's session or the operator)."""

    def ts(value):
        return format_timestamp(value) if value is not None else None

    if private is None:
        private = may_see_private(worker.wallet_address)
    return {
        "walletAddress": worker.wallet_address,
        "createdAt": ts(worker.created_at),
        "enrolled": worker.public_key is not None,
        "publicKey": worker.public_key if private else None,
        "enrolledAt": ts(worker.enrolled_at),
        "hostname": worker.hostname if private else None,
        "agentVersion": worker.agent_version,
        "dockerAvailable": worker.docker_available,
        "online": is_online(worker, now),
        "lastHeartbeat": ts(worker.last_heartbeat_at),
        "lastSeen": ts(worker.last_seen_at),
        "tailscaleIp": worker.tailscale_ip if private else None,
        "cpuCores": worker.cpu_cores,
        "ramTotalGb": worker.ram_total_gb,
        "storageTotalGb": worker.storage_total_gb,
        # All the machine runs: GET /workers/<wallet>/containers lists those it reported.
        "containerCount": worker.container_total,
        "credits": credits(worker.credits_millis),
        **liveness(worker, now),
    }


def find_worker(address: str) -> Worker | None:
    return Worker.get_or_none(Worker.wallet_address == wallet(address, "wallet"))


def metrics(worker: Worker, now: datetime) -> tuple[list[dict], int]:
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
    return [point.to_json() for point in points], total


def _get_worker(address: str) -> Worker:
    worker = Worker.get_or_none(Worker.wallet_address == wallet(address, "wallet"))
    if worker is None:
        raise ApiError(404, f"no worker with wallet {address}")
    return worker


def containers(worker: Worker) -> list[dict]:
    query = (
        WorkerContainer.select()
        .where(WorkerContainer.worker == worker)
        .order_by(WorkerContainer.container_name, WorkerContainer.id)
    )
    return [c.to_json() for c in query]


def after_cursor() -> str | None:
    """The wallet in ``?after=``: a page of workers after it, by wallet. A million workers
    deep, that is one range read of the primary key, where ``?offset=`` reads and skips every
    row before the page; both at once is a 400."""
    if "after" not in request.args:
        return None
    if "offset" in request.args:
        raise ApiError(400, "after and offset are two ways of paging: give one of them")
    return wallet(request.args["after"], "after")


@bp.get("")
def list_workers():
    now = utcnow()
    query = Worker.select().order_by(Worker.wallet_address)
    after = after_cursor()
    if after is not None:
        limit = query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        page, more = first_page(query.where(Worker.wallet_address > after).limit, limit)
        last = page[-1].wallet_address if more else None
        return jsonify(items=[summary(w, now) for w in page], limit=limit, next=last)
    # Offset paging as before, with its total; next lets a client go on by wallet instead.
    page = paginated(query, lambda w: summary(w, now))
    more = page["offset"] + len(page["items"]) < page["total"]
    page["next"] = page["items"][-1]["walletAddress"] if more and page["items"] else None
    return jsonify(page)


@bp.get("/<address>")
def get_worker(address: str):
    worker = _get_worker(address)
    window = OpenWindow.get_or_none(OpenWindow.worker == worker)
    return jsonify(
        {
            **summary(worker, utcnow()),
            "openWindow": window.to_json() if window else None,
            "containers": containers(worker),
        }
    )


@bp.get("/<address>/containers")
def get_containers(address: str):
    worker = _get_worker(address)
    return jsonify(walletAddress=worker.wallet_address, containers=containers(worker))


@bp.get("/<address>/status")
def get_status(address: str):
    worker = _get_worker(address)
    return jsonify(walletAddress=worker.wallet_address, **liveness(worker, utcnow()))


@bp.get("/<address>/metrics")
def get_metrics(address: str):
    worker = _get_worker(address)
    points, total = metrics(worker, utcnow())
    return jsonify(walletAddress=worker.wallet_address, points=points, total=total)


@bp.get("/<address>/uptime")
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
    return jsonify(
        walletAddress=worker.wallet_address,
        timeFrom=format_timestamp(start),
        timeTo=format_timestamp(end),
        **uptime(worker, start, end, after=after, limit=limit),
    )
