"""``/api/v1``: the dialect of the existing Tassium front ends (the deployers' app and the
worker owners' client), listed in ``UI-V1.md``, so that they work with only their API address
changed.

A thin translation at the edge: every route calls the same functions as our own routes
(deployments, workers, heartbeats), under the same rules, and only reshapes the answer: plain
arrays instead of pages, the original field names, ``{exists: false}`` for an unknown worker.
CORS for these paths is in collector/api.py (``*`` unless origins are configured).
"""

from datetime import datetime, timedelta

from flask import Blueprint, jsonify, request

from collector import deployments, heartbeats, telemetry, workers
from collector.api import (
    MAX_OFFSET,
    ApiError,
    json_object,
    query_int,
    require_api_token,
    settings,
)
from collector.models import OpenWindow, Project, UptimeRecord, Worker
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import format_timestamp, utcnow

bp = Blueprint("ui_v1", __name__, url_prefix="/api/v1")

# The worker client calls a worker active when it was seen within this long.
ACTIVE = timedelta(minutes=5)
# The original answers whole lists; these bound what one request may read.
MAX_WORKERS = 1000
UPTIME_DAYS = 30


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
    return jsonify([deployment(p) for p in deployments.listing()])


@bp.post("/deployments")
@require_api_token
def create_deployment():
    return jsonify(deployment(deployments.create(json_object()))), 201


@bp.get("/deployments/<name>")
def get_deployment(name: str):
    return jsonify(deployment(deployments.find(name)))


@bp.delete("/deployments/<name>")
@require_api_token
def delete_deployment(name: str):
    deployments.remove(name)
    return jsonify(success=True)


@bp.patch("/deployments/<name>/env")
@require_api_token
def change_env(name: str):
    deployments.change_env(name, json_object())
    return jsonify(success=True)


@bp.patch("/deployments/<name>/replicas")
@require_api_token
def scale(name: str):
    return jsonify(deployment(deployments.scale(name, json_object())))


# --- the worker owners' client ------------------------------------------------------------


def _worker_row(worker: Worker, now: datetime) -> dict:
    summary = workers.summary(worker, now)
    last = workers.last_ping(worker)
    active = last is not None and now - last < ACTIVE
    return {
        "exists": True,
        "walletAddress": worker.wallet_address,
        "credits": summary["credits"],
        # As the original: the address is shown only while the machine is up.
        "tailscaleIp": worker.tailscale_ip if active else None,
        "isActive": active,
        "lastSeen": summary["lastSeen"],
        "hostname": worker.hostname,
        "cpuCores": worker.cpu_cores,
        "ramTotalGb": worker.ram_total_gb,
        "storageTotalGb": worker.storage_total_gb,
        "status": summary["status"],
        "lastPing": summary["lastPing"],
    }


@bp.get("/workers")
def list_workers():
    now = utcnow()
    limit = query_int("limit", MAX_WORKERS, 1, MAX_WORKERS)
    query = Worker.select().order_by(Worker.wallet_address).limit(limit)
    # Still a plain array: ?after=<the last wallet of the previous array> pages a large fleet
    # without the offset's skipped rows, beside the original's ?offset=.
    after = workers.after_cursor()
    if after is not None:
        query = query.where(Worker.wallet_address > after)
    else:
        query = query.offset(query_int("offset", 0, 0, MAX_OFFSET))
    return jsonify([_worker_row(w, now) for w in query])


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
        return jsonify([])
    return jsonify(workers.metrics(worker, utcnow()))


@bp.get("/workers/<address>/uptime")
def get_uptime(address: str):
    worker = workers.find_worker(address)
    if worker is None:
        return jsonify([])
    since = utcnow() - timedelta(days=UPTIME_DAYS)
    spans = [
        (r.time_from, r.time_to)
        for r in UptimeRecord.select()
        .where((UptimeRecord.worker == worker) & (UptimeRecord.time_to >= since))
        .order_by(UptimeRecord.time_from)
    ]
    window = OpenWindow.get_or_none(OpenWindow.worker == worker)
    if window is not None:
        spans.append((window.start_time, window.end_time))
    return jsonify(
        [
            {
                "startTime": format_timestamp(start),
                "endTime": format_timestamp(end),
                "durationMinutes": round((end - start).total_seconds() / 60, 2),
            }
            for start, end in spans
        ]
    )


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
