"""The application factory: a validated config in, a Flask app out."""

from typing import Annotated, Literal

import msgspec
from flask import Flask

from collector.config import CollectorConfig
from collector.identity import collector_key, sign_in
from collector.install import setup
from collector.money import payments, payouts, receipt_trees, report_routes
from collector.pages import dashboard, money_pages, openapi, ui_v1
from collector.projects import deployments
from collector.projects.deployer import Deployer
from collector.store import db
from collector.store.migrations import LATEST_VERSION, current_version
from collector.uptime import enrollment, heartbeats, receipt_check_routes, workers
from collector.uptime.fleet_gauges import FleetGauges
from collector.uptime.heartbeats import ServerTime
from collector.uptime.keys import KeyCache
from collector.uptime.pings import PingBook
from collector.web import api, bodies, pipeline, ratelimits, telemetry
from collector.web.database_state import DatabaseAnswered, DatabaseState, database_down
from collector.web.ratelimits import RateLimits
from collector.web.schema import Answer, Reply, answer, operation
from protocol.times import format_millis, utcnow


class Health(Answer, kw_only=True):
    status: Literal["ok", "error"]
    schemaVersion: int | msgspec.UnsetType = msgspec.UNSET  # noqa: N815
    error: str | msgspec.UnsetType = msgspec.UNSET
    serverTime: ServerTime  # noqa: N815
    maxSkew: Annotated[int, msgspec.Meta(description="seconds a heartbeat may be ahead")]  # noqa: N815
    maxBackfill: Annotated[int, msgspec.Meta(description="seconds it may be behind")]  # noqa: N815


def create_app(config: CollectorConfig) -> Flask:
    # No static folder: every route the collector has is documented in /openapi.json.
    app = Flask(__name__, static_folder=None)
    app.config["TASSIUM"] = config
    db.bind(config.database_url)
    # Made on the first start when it is kept in a file (CollectorKeyError when it cannot be).
    key = collector_key.from_config(config)
    app.extensions[collector_key.EXTENSION] = key
    collector_key.note_start(key)
    # What every request passes, outermost first: each step's before in this order, its
    # after in the reverse (collector/web/pipeline.py).
    pipeline.install(
        app,
        [
            telemetry.Timing(),  # spans every other step
            telemetry.CountRefusedHeartbeats(),
            DatabaseAnswered(),
            api.Cors(),
            bodies.ReadBody(max_bytes=config.max_body_bytes, timeout=config.body_timeout),
            ratelimits.LimitWrites(),  # a body refused anyway is not counted
            api.Authenticate(),
            heartbeats.Clock(),
        ],
    )
    telemetry.init_app(app, FleetGauges(config))
    app.extensions["tassium.database_state"] = DatabaseState()
    app.extensions["tassium.ratelimits"] = RateLimits(config)
    app.extensions["tassium.pings"] = PingBook()
    app.extensions["tassium.keys"] = KeyCache(config.key_cache_entries)
    heartbeats.init_app(app, config)
    if config.deployer_url:
        app.extensions["tassium.deployer"] = Deployer(
            config.deployer_url,
            secret=config.deployer_secret,
            repositories=config.deployer_repositories,
            timeout=config.deployer_timeout,
            build_timeout=config.deployer_build_timeout,
        )
    for module in (
        heartbeats,
        workers,
        enrollment,
        deployments,
        payments,
        payouts,
        report_routes,
        receipt_trees,
        setup,
        openapi,
        ui_v1,
        dashboard,
        money_pages,
        collector_key,
        receipt_check_routes,
    ):
        app.register_blueprint(module.bp)
    app.register_blueprint(sign_in.bp)
    # The same sign-in in the front ends' dialect, for an updated app.
    app.register_blueprint(sign_in.bp, name="sign_in_v1", url_prefix="/api/v1/auth")

    def clock() -> dict:
        # What an agent needs to judge its clock (tassium-agent status), answered even while
        # the database is down, and read last, as the answer leaves.
        return {
            "serverTime": format_millis(utcnow()),
            "maxSkew": config.max_skew,
            "maxBackfill": config.max_backfill,
        }

    @app.get("/healthz")
    @operation(
        summary="Health: the database answers and its schema is current",
        replies={
            200: Reply("Healthy", Health),
            503: Reply("Database unavailable or schema not current", Health),
        },
    )
    def healthz():
        try:
            version = current_version(db.database)
        except db.DATABASE_DOWN as exc:
            return database_down(exc, status="error", **clock())
        if version != LATEST_VERSION:
            error = f"schema is at version {version}, expected {LATEST_VERSION}"
            unhealthy = Health(status="error", schemaVersion=version, error=error, **clock())
            return answer(unhealthy, 503)
        return answer(Health(status="ok", schemaVersion=version, **clock()))

    return app
