"""The application factory: a validated config in, a Flask app out."""

from flask import Flask, jsonify

from collector.config import CollectorConfig
from collector.identity import sign_in
from collector.install import setup
from collector.money import payments, payouts, report_routes
from collector.pages import dashboard, openapi, ui_v1
from collector.projects import deployments
from collector.projects.deployer import Deployer
from collector.store import db
from collector.store.migrations import LATEST_VERSION, current_version
from collector.uptime import enrollment, heartbeats, workers
from collector.uptime.fleet_gauges import FleetGauges
from collector.uptime.keys import KeyCache
from collector.uptime.pings import PingBook
from collector.web import api, bodies, ratelimits, telemetry
from protocol.times import format_millis, utcnow


class CollectorFlask(Flask):
    """Flask asks ``inspect`` whether each hook and view is a coroutine function every time
    it calls one: nine times a heartbeat, a few percent of its CPU. The answer never
    changes, so it is kept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        found = self._sync.get(func)
        if found is None:
            found = self._sync[func] = super().ensure_sync(func)
        return found


def create_app(config: CollectorConfig) -> Flask:
    # No static folder: every route the collector has is documented in /openapi.json.
    app = CollectorFlask(__name__, static_folder=None)
    app.config["TASSIUM"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    db.bind(config.database_url)
    db.init_app(app)
    # First: its timing spans every other hook.
    telemetry.init_app(app, FleetGauges(config))
    api.init_app(app, config)
    # Inside collector/web/bodies.py's reader: the lane takes bodies already read.
    app.wsgi_app = heartbeats.HeartbeatLane(app, app.wsgi_app)
    bodies.init_app(app, config)
    # After the body reader's hook: a body refused anyway is not counted.
    ratelimits.init_app(app, config)
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
        setup,
        openapi,
        ui_v1,
        dashboard,
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
    def healthz():
        try:
            version = current_version(db.database)
        except db.DATABASE_DOWN as exc:
            return api.database_down(exc, status="error", **clock())
        healthy = version == LATEST_VERSION
        body = {"status": "ok" if healthy else "error", "schemaVersion": version, **clock()}
        if not healthy:
            body["error"] = f"schema is at version {version}, expected {LATEST_VERSION}"
        return jsonify(body), 200 if healthy else 503

    return app
