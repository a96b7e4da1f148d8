"""``/api/v1``: the dialect of the existing Tassium front ends (the deployers' app and the
worker owners' client), listed in ``UI-V1.md``, so that they work with only their API address
changed.

A thin translation at the edge: every route calls the same functions as our own routes
(deployments, workers, heartbeats), under the same rules, with the bodies decoded into the
same declared types (which take the front ends' field names too), and only reshapes the
answer: plain arrays instead of pages, the original field names, ``{exists: false}`` for an
unknown worker.
CORS for these paths is in collector/web/api.py (``*`` unless origins are configured).
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
from peewee import Query

from collector.errors import ApiError
from collector.projects import deployments
from collector.store.db import first_page
from collector.store.models import OpenWindow, Project, UptimeRecord, Worker
from collector.uptime import heartbeats, workers
from collector.uptime.windows import MAX_RECORDS_PAGE
from collector.web import telemetry
from collector.web.api import (
    MAX_PAGE,
    counted_array,
    page_bounds,
    query_int,
    settings,
)
from collector.web.schema import decode
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import format_timestamp, utcnow

bp = Blueprint("ui_v1", __name__, url_prefix="/api/v1")

# The worker client calls a worker active when it was seen within this long.
ACTIVE = timedelta(minutes=5)
# The original answers whole lists; these bound what one request may read (by default
# and at most; X-Total-Count and Link say what a cut array left out).
MAX_WORKERS = 1000
UPTIME_DAYS = 30
UPTIME_SPANS = 500


# --- the deployers' app -------------------------------------------------------------------


def deployment(project: Project) -> dict:
    return {
        "id": project.id,
        "appName": project.name,
        "githubRepo": deployments.repository(project),
        "branch": project.branch,
        "port": project.port,
        "creator": project.creator,
        "status": project.status,
        # The app lists a deployment once it has an address: the original's url exists only
        # after a deploy succeeded.
        "url": project.url if project.status == "success" else None,
        "errorMessage": project.error_message,
        "replicas": project.replicas,
        "createdAt": format_timestamp(project.created_at),
        "updatedAt": format_timestamp(project.updated_at),
    }


@bp.get("/deployments")
def list_deployments():
    if "creator" not in request.args:
        raise ApiError(400, "creator query parameter is required")
    # The app cannot page: by default a creator's whole list up to the common maximum.
    return _array_page(deployments.listing(), deployment, default=MAX_PAGE, maximum=MAX_PAGE)


# The original app's create, delete and scale are anonymous: let through only where the
# operator chose to (insecure_anonymous_deployments); its env changes never are.
@bp.post("/deployments")
def create_deployment():
    body = decode(deployments.NewDeployment)
    return jsonify(deployment(deployments.create(body, anonymous=True))), 201


@bp.get("/deployments/<name>")
def get_deployment(name: str):
    return jsonify(deployment(deployments.find(name)))


@bp.delete("/deployments/<name>")
def delete_deployment(name: str):
    deployments.owned(name, anonymous=True)
    deployments.remove(name)
    return jsonify(success=True)


@bp.patch("/deployments/<name>/env")
def change_env(name: str):
    deployments.owned(name)
    deployments.change_env(name, decode(deployments.EnvChange))
    return jsonify(success=True)


@bp.patch("/deployments/<name>/replicas")
def scale(name: str):
    deployments.owned(name, anonymous=True)
    return jsonify(deployment(deployments.scale(name, decode(deployments.ReplicasChange))))


# --- the worker owners' client ------------------------------------------------------------


def _worker_row(worker: Worker, now: datetime) -> dict:
    summary = workers.summary(worker, now)
    last = workers.last_ping(worker)
    active = last is not None and now - last < ACTIVE
    return {
        "exists": True,
        "walletAddress": worker.wallet_address,
        "credits": summary["credits"],
        # As the original, the address only while the machine is up; as ours, only to its
        # owner's session and the operator (null otherwise, which the client shows as none).
        "tailscaleIp": summary["tailscaleIp"] if active else None,
        "isActive": active,
        "lastSeen": summary["lastSeen"],
        "hostname": summary["hostname"],
        "cpuCores": worker.cpu_cores,
        "ramTotalGb": worker.ram_total_gb,
        "storageTotalGb": worker.storage_total_gb,
        "status": summary["status"],
        "lastPing": summary["lastPing"],
    }


@bp.get("/workers")
def list_workers():
    now = utcnow()
    query = Worker.select().order_by(Worker.wallet_address)
    # Still a plain array: ?after=<the last wallet of the previous array> pages a large fleet
    # without the offset's skipped rows (nor a count of them), beside the original's ?offset=.
    after = workers.after_cursor()
    if after is None:
        return _array_page(query, lambda w: _worker_row(w, now), MAX_WORKERS, MAX_WORKERS)
    limit = query_int("limit", MAX_WORKERS, 1, MAX_WORKERS)
    page, more = first_page(query.where(Worker.wallet_address > after).limit, limit)
    following = {"after": page[-1].wallet_address} if more else None
    return counted_array([_worker_row(w, now) for w in page], None, next_page=following)


@bp.get("/workers/<address>")
def get_worker(address: str):
    worker = workers.find_worker(address)
    if worker is None:
        return jsonify(exists=False)
    return jsonify(_worker_row(worker, utcnow()))


@bp.get("/workers/<address>/containers")
def get_containers(address: str):
    worker = workers.find_worker(address)
    if worker is None:
        return jsonify([])
    # The original bash agent's clients read "name"; the plan's read "containerName".
    return jsonify([{"name": c["containerName"], **c} for c in workers.containers(worker)])


@bp.get("/workers/<address>/status")
def get_status(address: str):
    worker = workers.find_worker(address)
    if worker is None:
        return jsonify(status="UNKNOWN", lastPing=None)
    return jsonify(workers.liveness(worker, utcnow()))


@bp.get("/workers/<address>/metrics")
def get_metrics(address: str):
    worker = workers.find_worker(address)
    if worker is None:
        query_int("hours", 1, 1, workers.MAX_METRICS_HOURS)  # a bad value is still an error
        query_int("limit", 1, 1, workers.MAX_METRICS_POINTS)
        return counted_array([], 0)
    # Thinned evenly over the hours asked past ?limit= (workers.metrics says why), never
    # paged: X-Total-Count says how many points the range holds.
    points, total = workers.metrics(worker, utcnow())
    return counted_array(points, total)


@bp.get("/workers/<address>/uptime")
def get_uptime(address: str):
    limit, offset = page_bounds(UPTIME_SPANS, MAX_RECORDS_PAGE)
    worker = workers.find_worker(address)
    if worker is None:
        return counted_array([], 0)
    since = utcnow() - timedelta(days=UPTIME_DAYS)
    records = (
        UptimeRecord.select()
        .where((UptimeRecord.worker == worker) & (UptimeRecord.time_to >= since))
        .order_by(UptimeRecord.time_from, UptimeRecord.id)
    )
    spans = [(r.time_from, r.time_to) for r in records.limit(limit).offset(offset)]
    recorded = records.count()
    window = OpenWindow.get_or_none(OpenWindow.worker == worker)
    # The open window is the list's last span, after every record: on the page holding that
    # place.
    if window is not None and offset <= recorded < offset + limit:
        spans.append((window.start_time, window.end_time))
    total = recorded + (window is not None)
    following = {"offset": offset + len(spans)} if offset + len(spans) < total else None
    return counted_array([_span(start, end) for start, end in spans], total, next_page=following)


def _span(start: datetime, end: datetime) -> dict:
    return {
        "startTime": format_timestamp(start),
        "endTime": format_timestamp(end),
        "durationMinutes": round((end - start).total_seconds() / 60, 2),
    }


def _array_page(
    query: Query, serialize: Callable[[Any], dict], default: int, maximum: int
) -> Response:
    """A page of ``query`` by ``?limit=`` and ``?offset=``, as a plain array with its count."""
    limit, offset = page_bounds(default, maximum)
    items = [serialize(row) for row in query.limit(limit).offset(offset)]
    total = query.count()
    following = {"offset": offset + len(items)} if offset + len(items) < total else None
    return counted_array(items, total, next_page=following)


# --- the original agents ------------------------------------------------------------------


@bp.post("/heartbeat")
@telemetry.carries_heartbeats
def heartbeat():
    body = request.get_data(cache=True)
    status, answer = heartbeats.receive(body, request.headers.get(SIGNATURE_HEADER), settings())
    if status != 200:
        return jsonify(answer), status, heartbeats.refusal_headers(answer)
    return jsonify(success=True, creditsEarned=answer["creditsEarned"])


@bp.post("/heartbeat/ping")
def ping():
    body = request.get_data(cache=True)
    heartbeats.ping(body, request.headers.get(SIGNATURE_HEADER), settings())
    return jsonify(success=True)
