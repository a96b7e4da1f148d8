"""Workers: the read routes the UI uses for status, uptime and containers. Enrolling them is
collector/enrollment.py."""

from datetime import datetime, timedelta

from flask import Blueprint, current_app, jsonify, request

from collector.api import (
    DEFAULT_PAGE,
    MAX_PAGE,
    ApiError,
    paginated,
    query_int,
    settings,
    wallet,
)
from collector.db import first_page
from collector.models import (
    OpenWindow,
    Worker,
    WorkerContainer,
    WorkerMetric,
    credits,
)
from collector.pings import live_status
from collector.windows import MAX_RECORDS_PAGE, RECORDS_PAGE, uptime
from protocol import ProtocolError
from protocol.times import format_timestamp, parse_timestamp, utcnow

bp = Blueprint("workers", __name__, url_prefix="/workers")


def is_online(worker: Worker, now: datetime) -> bool:
    """Online while the last heartbeat is within the gap: the same rule that keeps a window open."""
    gap = timedelta(seconds=settings().gap)
    return worker.last_heartbeat_at is not None and now - worker.last_heartbeat_at <= gap


def online(now: datetime):
    """is_online as a query condition, for counting a fleet without loading it."""
    return online_since(now, settings().gap)


def online_since(now: datetime, gap: int):
    return Worker.last_heartbeat_at >= now - timedelta(seconds=gap)


# The longest series the metrics route serves, in hours.
MAX_METRICS_HOURS = 7 * 24


def last_ping(worker: Worker) -> datetime | None:
    """The last sign of life: a ping (written late by collector/pings.py, so this process's own
    pending one counts too) or the arrival of a heartbeat."""
    pending = current_app.extensions["tassium.pings"].latest(worker.wallet_address)
    signs = [t for t in (worker.last_ping_at, pending, worker.last_seen_at) if t is not None]
    return max(signs, default=None)


def liveness(worker: Worker, now: datetime) -> dict:
    ping = last_ping(worker)
    return {
        "status": live_status(ping, now, settings().ping_interval),
        "lastPing": format_timestamp(ping) if ping is not None else None,
    }


def summary(worker: Worker, now: datetime) -> dict:
    """What every reader of a worker gets: our routes and the /api/v1 dialect."""

    def ts(value):
        return format_timestamp(value) if value is not None else None

    return {
        "walletAddress": worker.wallet_address,
        "createdAt": ts(worker.created_at),
        "enrolled": worker.public_key is not None,
        # Public by nature; lets an agent check that it is enrolled with its own key.
        "publicKey": worker.public_key,
        "enrolledAt": ts(worker.enrolled_at),
        "hostname": worker.hostname,
        "agentVersion": worker.agent_version,
        "dockerAvailable": worker.docker_available,
        "online": is_online(worker, now),
        "lastHeartbeat": ts(worker.last_heartbeat_at),
        "lastSeen": ts(worker.last_seen_at),
        "tailscaleIp": worker.tailscale_ip,
        "cpuCores": worker.cpu_cores,
        "ramTotalGb": worker.ram_total_gb,
        "storageTotalGb": worker.storage_total_gb,
        "credits": credits(worker.credits_millis),
        **liveness(worker, now),
    }


def find_worker(address: str) -> Worker | None:
    return Worker.get_or_none(Worker.wallet_address == wallet(address, "wallet"))


def metrics(worker: Worker, now: datetime) -> list[dict]:
    """The points of the last ``?hours=`` hours (1 by default), oldest first."""
    hours = query_int("hours", 1, 1, MAX_METRICS_HOURS)
    query = (
        WorkerMetric.select()
        .where(
            (WorkerMetric.worker == worker)
            & (WorkerMetric.timestamp >= now - timedelta(hours=hours))
        )
        .order_by(WorkerMetric.timestamp, WorkerMetric.id)
    )
    return [point.to_json() for point in query]


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
    return jsonify(walletAddress=worker.wallet_address, points=metrics(worker, utcnow()))


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
