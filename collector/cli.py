"""``tassium-collector``: serve, migrate, sweep, token create, workers."""

from datetime import timedelta
from pathlib import Path

import click

from collector import db, logs, migrations
from collector.config import (
    TOKEN_TTL_MAX,
    TOKEN_TTL_MIN,
    CollectorConfig,
    ConfigError,
    load_config,
    mask_password,
)
from protocol import ProtocolError
from protocol.times import format_timestamp, utcnow
from protocol.wallets import normalize_wallet


def _open(config: CollectorConfig, *, migrated: bool = True):
    """Bind the database; refuse to go on against a schema this version does not know."""
    database = db.bind(config.database_url)
    if migrated:
        _check_schema(database)
    return database


def _check_schema(database) -> None:
    version = migrations.current_version(database)
    if version != migrations.LATEST_VERSION:
        raise click.ClickException(
            f"the database schema is at version {version}, this collector needs "
            f"{migrations.LATEST_VERSION}: run tassium-collector migrate"
        )


class _Commands(click.Group):
    """Every command: an operator's mistake about the database is a sentence, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except db.DATABASE_DOWN as exc:
            config = ctx.obj if isinstance(ctx.obj, CollectorConfig) else None
            raise click.ClickException(_database_problem(config, exc)) from None


def _database_problem(config: CollectorConfig | None, exc: Exception) -> str:
    reason = db.failure_reason(exc)
    if config is None:
        return f"the database failed: {reason}"
    where = mask_password(config.database_url)
    if config.is_postgres:
        check = "check that PostgreSQL is running there and that DATABASE_URL is right"
    else:
        directory = Path(db.sqlite_path(config.database_url)).resolve().parent
        check = f"check that the directory {directory} exists and is writable"
    return f"cannot use the database {where}: {reason}; {check}"


@click.group(cls=_Commands)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration file [default: /etc/tassium/collector.yaml]",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """The Tassium collector: heartbeats into uptime, deployments and payments for the UI."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(config.log_level)
    ctx.obj = config


@cli.command()
@click.pass_obj
def migrate(config: CollectorConfig) -> None:
    """Apply pending schema migrations."""
    database = _open(config, migrated=False)
    applied = migrations.migrate(database)
    for migration in applied:
        click.echo(f"applied migration {migration.version}: {migration.description}")
    click.echo(f"schema is at version {migrations.current_version(database)}")


@cli.command()
@click.option(
    "--migrate",
    "run_migrations",
    is_flag=True,
    help="apply pending migrations before serving (also: migrate_on_start)",
)
@click.pass_obj
def serve(config: CollectorConfig, run_migrations: bool) -> None:
    """Serve the HTTP API with gunicorn."""
    from collector.serve import serve as run_server

    database = _open(config, migrated=False)
    if run_migrations or config.migrate_on_start:
        migrations.migrate(database)
    _check_schema(database)
    # Close before gunicorn forks (the pool too): each worker opens its own connections.
    db.close_all(database)
    run_server(config)


@cli.command()
@click.pass_obj
def sweep(config: CollectorConfig) -> None:
    """Close every uptime window silent for longer than the gap, and delete metrics points
    older than metrics_retention_days (one pass)."""
    from collector.sweeper import sweep_pass

    days = config.metrics_retention_days
    with _open(config).connection_context():
        swept = sweep_pass(
            gap=timedelta(seconds=config.gap),
            retention=timedelta(days=days),
            now=utcnow(),
            build_timeout=config.build_timeout,
        )
    click.echo(f"closed {swept.closed} windows")
    click.echo(f"deleted {swept.pruned} metrics points older than {days} days")
    if swept.failed:
        click.echo(f"failed {swept.failed} deployments whose build the collector lost track of")


@cli.group()
def token() -> None:
    """Enrollment tokens."""


@token.command("create")
@click.option("--wallet", "wallet_address", required=True, help="the wallet the token enrolls")
@click.option(
    "--ttl",
    type=click.IntRange(TOKEN_TTL_MIN, TOKEN_TTL_MAX),
    default=None,
    help="seconds until it expires [default: enrollment_token_ttl]",
)
@click.pass_obj
def token_create(config: CollectorConfig, wallet_address: str, ttl: int | None) -> None:
    """Issue a single-use enrollment token; it is printed once and stored only hashed."""
    from collector.workers import issue_token

    try:
        address = normalize_wallet(wallet_address, config.wallet_format)
    except ProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint="--wallet") from None
    ttl = ttl or config.enrollment_token_ttl
    with _open(config).connection_context():
        now = utcnow()
        value = issue_token(address, timedelta(seconds=ttl), now)
    click.echo(value)
    click.echo(
        f"valid once for {address} until {format_timestamp(now + timedelta(seconds=ttl))}", err=True
    )


@cli.command("workers")
@click.pass_obj
def list_workers(config: CollectorConfig) -> None:
    """A table of workers: online or not, last heartbeat, containers, credits."""
    from peewee import JOIN, fn

    from collector.models import Worker, WorkerContainer, credits

    gap = timedelta(seconds=config.gap)
    now = utcnow()
    with _open(config).connection_context():
        rows = (
            Worker.select(Worker, fn.COUNT(WorkerContainer.id).alias("container_count"))
            .join(
                WorkerContainer,
                join_type=JOIN.LEFT_OUTER,
                on=(WorkerContainer.worker == Worker.wallet_address),
            )
            .group_by(Worker.wallet_address)
            .order_by(Worker.wallet_address)
        )
        table = [("WALLET", "STATUS", "LAST HEARTBEAT", "CONTAINERS", "CREDITS", "HOSTNAME")]
        for w in rows:
            last = w.last_heartbeat_at
            online = last is not None and now - last <= gap
            table.append(
                (
                    w.wallet_address,
                    "online" if online else "offline",
                    format_timestamp(last) if last else "never",
                    str(w.container_count),
                    str(credits(w.credits_millis)),
                    w.hostname or "-",
                )
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def main() -> None:
    cli(prog_name="tassium-collector")
