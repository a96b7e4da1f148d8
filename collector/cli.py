"""``tassium-collector``: serve, migrate, sweep, token create, workers, report, payout,
receipts-key, verify-receipts."""

import logging
from datetime import timedelta
from pathlib import Path

import click

from collector import logs
from collector.config import (
    ALIASES,
    CONFIG_VARIABLE,
    DATABASE_FILE,
    DEFAULT_CONFIG_PATH,
    RULES,
    STATE_DIRECTORY,
    TOKEN_TTL_MAX,
    TOKEN_TTL_MIN,
    CollectorConfig,
    ConfigError,
    load_config,
    variable,
)
from collector.store import db, migrations
from protocol import ProtocolError
from protocol.heartbeat import MAX_CPU_CORES, MAX_GB
from protocol.times import format_millis, format_timestamp, utcnow
from protocol.wallets import normalize_wallet

log = logging.getLogger(__name__)


def _open(config: CollectorConfig, *, migrated: bool = True, create: bool = False):
    """Bind the database; refuse to go on against a schema this version does not know. Only
    ``create`` (migrate, serve --migrate) makes a missing SQLite file: any other command run
    with the wrong settings would leave an empty database behind and call it unmigrated."""
    file = config.sqlite_file
    if file is not None and create and file.parent == config.state_directory:
        try:  # the default place, which nobody may have made yet
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise click.ClickException(
                f"cannot create the directory {file.parent} for the database: {exc.strerror}; "
                f"create it, or set database_url ({variable('database_url')})"
            ) from None
    elif file is not None and not create and not file.exists():
        raise click.ClickException(_missing(config))
    database = db.bind(config.database_url, create=create)
    if migrated:
        _check_schema(config, database)
    return database


def _missing(config: CollectorConfig) -> str:
    return (
        f"there is no database at {config.database_location}: run tassium-collector migrate "
        f"(or serve --migrate) to create it, or set database_url ({variable('database_url')}) "
        "to the collector's database"
    )


def _check_schema(config: CollectorConfig, database) -> None:
    version = migrations.current_version(database)
    latest = migrations.LATEST_VERSION
    if version < latest:
        raise click.ClickException(
            f"the database {config.database_location} is at schema version {version}, this "
            f"collector needs {latest}: run tassium-collector migrate"
        )
    if version > latest:
        raise click.ClickException(
            f"the database {config.database_location} is at schema version {version}, newer "
            f"than this collector knows ({latest}): run a collector as new as the one that "
            "migrated it"
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
    if config.is_postgres:
        check = "check that PostgreSQL is running there and that DATABASE_URL is right"
    else:
        file = config.sqlite_file
        if file.parent.is_dir() and not file.exists():
            return _missing(config)  # gone since the command looked
        check = f"check that the directory {file.parent.resolve()} exists and is writable"
    return f"cannot use the database {config.database_location}: {reason}; {check}"


def _variables() -> str:
    """Every variable the collector reads, named once, from its settings' rules."""
    aliased = {key: name for name, key in ALIASES.items()}
    return ", ".join(
        variable(key) + (f" (or {aliased[key]})" if key in aliased else "") for key in RULES
    )


_EPILOG = f"""Settings are read from {DEFAULT_CONFIG_PATH} (or --config, or the file
{CONFIG_VARIABLE} names); each can be overridden by an environment variable: {_variables()}.

\b
Unless database_url says otherwise, the SQLite database is {DATABASE_FILE}
in the collector's state directory, the same wherever a command is run:
  under systemd:  $STATE_DIRECTORY (the unit's StateDirectory=)
  for root:       {STATE_DIRECTORY}
  for others:     $XDG_STATE_HOME/tassium-collector, else ~/.local/state/tassium-collector"""


@click.group(
    cls=_Commands, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(
    package_name="tassium", prog_name="tassium-collector", message="%(prog)s %(version)s"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help=f"YAML configuration file [default: {DEFAULT_CONFIG_PATH}]",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """The Tassium collector: heartbeats into uptime, deployments and payments for the UI."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(config.log_level)
    for warning in config.warnings:
        click.echo(f"Warning: {warning}", err=True)
    ctx.obj = config


@cli.command()
@click.pass_obj
def migrate(config: CollectorConfig) -> None:
    """Apply pending schema migrations (creating the SQLite database if it is missing)."""
    database = _open(config, migrated=False, create=True)
    applied = migrations.migrate(database)
    for migration in applied:
        click.echo(f"applied migration {migration.version}: {migration.description}")
    version = migrations.current_version(database)
    click.echo(f"the database {config.database_location} is at schema version {version}")


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
    from collector.serve import exposure_problem, listen_problem
    from collector.serve import serve as run_server

    problem = exposure_problem(config)
    if problem:
        raise click.ClickException(problem)
    migrating = run_migrations or config.migrate_on_start
    database = _open(config, migrated=False, create=migrating)
    if migrating:
        migrations.migrate(database)
    _check_schema(config, database)
    log.info("using the database %s", config.database_location)
    # Made now, before gunicorn forks, so that a key that cannot be had is one sentence here
    # rather than a traceback in every serving process.
    _receipt_key(config)
    # Close before gunicorn forks (the pool too): each worker opens its own connections.
    db.close_all(database)
    # Last, so that little can take the port between this look and gunicorn's own bind.
    problem = listen_problem(config)
    if problem:
        raise click.ClickException(problem)
    run_server(config)


@cli.command()
@click.pass_obj
def sweep(config: CollectorConfig) -> None:
    """Close every uptime window silent for longer than the gap, and delete metrics points
    older than metrics_retention_days, collector runs older than 400 days and enrollment
    tokens a week past expiry (one pass)."""
    from collector.uptime.sweeper import sweep_pass

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
    if swept.expired:
        click.echo(f"deleted {swept.expired} collector runs and enrollment tokens past retention")


def _receipt_key(config: CollectorConfig):
    from collector.identity import collector_key

    try:
        return collector_key.from_config(config)
    except collector_key.CollectorKeyError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group("receipts-key")
def receipts_key() -> None:
    """The key the collector signs receipts with, shared by all its nodes."""


@receipts_key.command("show")
@click.pass_obj
def receipts_key_show(config: CollectorConfig) -> None:
    """Every key the collector has signed receipts with, and when each was valid."""
    from collector.identity import collector_key

    try:
        mine = collector_key.configured_key_id(config)
    except collector_key.CollectorKeyError as exc:
        raise click.ClickException(str(exc)) from None
    with _open(config).connection_context():
        keys = collector_key.history()
    table = [("KEY ID", "PUBLIC KEY", "VALID FROM", "VALID UNTIL")]
    for key in keys:
        until = key.valid_until
        table.append(
            (
                key.key_id,
                key.public_key,
                format_millis(key.valid_from),
                format_millis(until) if until else "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        _echo_row(row, widths)
    where = "receipt_key" if config.receipt_key else config.receipt_key_path
    if mine is None:
        click.echo(f"There is no key at {where} yet: the collector makes one when it starts.")
    else:
        click.echo(f"This configuration signs with the key {mine} ({where}).")


@receipts_key.command("rotate")
@click.pass_obj
def receipts_key_rotate(config: CollectorConfig) -> None:
    """Sign with a new key from now on; earlier keys stay published, so earlier receipts
    stay valid. The old key file is kept beside the new one."""
    from collector.identity import collector_key

    with _open(config).connection_context():
        try:
            rotation = collector_key.rotate(config, utcnow())
        except collector_key.CollectorKeyError as exc:
            raise click.ClickException(str(exc)) from None
    for key_id in rotation.retired:
        click.echo(f"Retired the key {key_id}: it stays published for the receipts it signed.")
    click.echo(f"The collector now signs with the key {rotation.current.key_id}.")
    click.echo(f"The old key file is kept as {rotation.kept}.")
    click.echo(
        f"Copy {config.receipt_key_path} to every other node of this collector and restart "
        "them: until then they sign with the retired key."
    )


@receipts_key.command("retire")
@click.argument("key_id")
@click.pass_obj
def receipts_key_retire(config: CollectorConfig, key_id: str) -> None:
    """End the validity of a key no node signs with any more (after a new receipt_key)."""
    from collector.identity import collector_key

    with _open(config).connection_context():
        try:
            ended = collector_key.retire(config, key_id, utcnow())
        except collector_key.CollectorKeyError as exc:
            raise click.ClickException(str(exc)) from None
    if ended:
        click.echo(f"Retired the key {key_id}: it stays published for the receipts it signed.")
    else:
        click.echo(f"The key {key_id} was retired already.")


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
    from collector.uptime.enrollment import issue_token

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


@cli.group()
def capacity() -> None:
    """The capacity each worker is credited for (fixed when it enrolls)."""


def _wallet_option(config: CollectorConfig, wallet_address: str) -> str:
    try:
        return normalize_wallet(wallet_address, config.wallet_format)
    except ProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint="--wallet") from None


def _capacity_line(label: str, capacity) -> None:
    facts = (capacity.cpu_cores, capacity.ram_gb, capacity.storage_gb)
    cores, ram, storage = ("-" if value is None else f"{value:g}" for value in facts)
    click.echo(f"{label}: {cores} cores, {ram} GB RAM, {storage} GB storage")


@capacity.command("show")
@click.option("--wallet", "wallet_address", required=True)
@click.pass_obj
def capacity_show(config: CollectorConfig, wallet_address: str) -> None:
    """What the worker is credited for, what it reports, and every change."""
    from collector.store.models import CapacityChange, Worker
    from collector.uptime import capacity as capacities

    address = _wallet_option(config, wallet_address)
    with _open(config).connection_context():
        worker = Worker.get_or_none(Worker.wallet_address == address)
        if worker is None:
            raise click.ClickException(f"no worker {address}")
        _capacity_line("credited", capacities.held(worker))
        _capacity_line("reported", capacities.reported(worker))
        flags = capacities.flags(worker, config)
        click.echo(f"flags: {', '.join(flags) or '-'}")
        for change in (
            CapacityChange.select()
            .where(CapacityChange.worker == address)
            .order_by(CapacityChange.changed_at, CapacityChange.id)
        ):
            values = capacities.Capacity(change.cpu_cores, change.ram_gb, change.storage_gb)
            _capacity_line(f"{format_timestamp(change.changed_at)} {change.reason}", values)


_FORCE = click.option("--force", is_flag=True, help="allow values above the configured maximums")


@capacity.command("approve")
@click.option("--wallet", "wallet_address", required=True)
@_FORCE
@click.pass_obj
def capacity_approve(config: CollectorConfig, wallet_address: str, force: bool) -> None:
    """Credit the worker for what it last reported (within the maximums unless --force)."""
    from collector.uptime import capacity as capacities

    address = _wallet_option(config, wallet_address)
    with _open(config).connection_context():
        try:
            approved = capacities.approve(address, config, utcnow(), force=force)
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    _capacity_line("approved", approved)


@capacity.command("set")
@click.option("--wallet", "wallet_address", required=True)
@click.option("--cpu", type=click.IntRange(1, MAX_CPU_CORES), help="CPU cores")
@click.option("--ram", type=click.FloatRange(0, MAX_GB), help="RAM in GB")
@click.option("--storage", type=click.FloatRange(0, MAX_GB), help="storage in GB")
@_FORCE
@click.pass_obj
def capacity_set(
    config: CollectorConfig,
    wallet_address: str,
    cpu: int | None,
    ram: float | None,
    storage: float | None,
    force: bool,
) -> None:
    """Credit the worker for these facts (those not given stay as they are)."""
    from collector.uptime import capacity as capacities

    address = _wallet_option(config, wallet_address)
    given = {"cpu_cores": cpu, "ram_gb": ram, "storage_gb": storage}
    facts = {name: value for name, value in given.items() if value is not None}
    if not facts:
        raise click.UsageError("give at least one of --cpu, --ram, --storage")
    with _open(config).connection_context():
        try:
            changed = capacities.set_capacity(address, config, utcnow(), force=force, **facts)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(f"{exc} (--force sets it anyway)") from None
    _capacity_line("set", changed)


@cli.command("workers")
@click.pass_obj
def list_workers(config: CollectorConfig) -> None:
    """A table of workers: state (and whether it is paid), last heartbeat, containers,
    credits. The states are those of the dashboard and the API (docs/operators.md, "Worker
    states")."""
    from peewee import JOIN, fn

    from collector.money import units
    from collector.store.models import Worker, WorkerContainer
    from collector.uptime import states

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
        table = [("WALLET", "STATE", "PAID", "LAST HEARTBEAT", "CONTAINERS", "CREDITS", "HOSTNAME")]
        for w in rows:
            last = w.last_heartbeat_at
            # The last sign of life as written (a ping still pending in a serving process
            # counts a few seconds later, as on /metrics).
            signs = [t for t in (w.last_ping_at, w.last_seen_at) if t is not None]
            state = states.state_of(
                w, max(signs, default=None), now, gap=config.gap, ping_interval=config.ping_interval
            )
            table.append(
                (
                    w.wallet_address,
                    state,
                    "yes" if states.PAID[state] else "no",
                    format_timestamp(last) if last else "never",
                    str(w.container_count),
                    units.thousandths(w.credits_millis),
                    w.hostname or "-",
                )
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        _echo_row(row, widths)


def _echo_row(row, widths: list[int]) -> None:
    click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _period(text: str):
    from collector.money.reports import Period

    try:
        return Period.parse(text, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None


_PERIOD_HELP = "24h, 7d, 30d, a UTC month like 2026-11, or FROM/TO in RFC 3339"


@cli.command()
@click.option("--period", "period_text", required=True, help=_PERIOD_HELP)
@click.option("--csv", "as_csv", is_flag=True, help="CSV, as GET /reports/fleet.csv answers")
@click.pass_obj
def report(config: CollectorConfig, period_text: str, as_csv: bool) -> None:
    """Every worker's uptime, downtime and credits in a period (streamed, by wallet). The
    table gives the uptime share as a percentage with one decimal, rounded down; the CSV keeps
    the route's uptimeFraction, to the millionth."""
    import msgspec

    from collector.money import report_csv, reports, units

    period = _period(period_text)
    with _open(config).connection_context():
        found = reports.fleet(period, **reports.timing(config, utcnow()), bounds=config)
        if as_csv:
            rows = (msgspec.structs.astuple(r.summary()) for r in found)
            for line in report_csv.csv_lines(reports.FLEET_COLUMNS, rows):
                click.echo(line, nl=False)
            return
        headings = ("WALLET", "UPTIME (s)", "DOWNTIME (s)", "UPTIME SHARE", "CREDITS", "FLAGS")
        # Fixed widths, so that the table streams however large the fleet.
        widths = [max(len(c), 12) for c in headings]
        widths[0] = 56 if config.wallet_format == "stellar" else 42
        _echo_row(headings, widths)
        for report in found:
            row = report.summary()
            _echo_row(
                (
                    row.wallet_address,
                    row.uptime_seconds,
                    row.downtime_seconds,
                    units.percent(row.uptime_fraction),
                    units.thousandths(report.credits_millis),
                    row.flags or "-",
                ),
                widths,
            )


@cli.command()
@click.option("--period", "period_text", required=True, help=_PERIOD_HELP)
@click.option("--budget", required=True, help="the total to split, a uint256 in decimal")
# No default here: the command takes payouts.DEFAULT_BASIS when it runs (it imports that
# module only then, as the other commands do theirs), so routes and command share one default.
@click.option(
    "--basis",
    type=click.Choice(["uptime", "credits"]),
    help="what the shares weigh: counted uptime (the default) or credits, which trust the "
    "capacity each worker declared",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV, as GET /payouts/export.csv answers")
@click.option(
    "--record",
    is_flag=True,
    help="record it: one payment per share, once per period; periods never overlap",
)
@click.option("--tx-hash", help="the transaction that paid it, stored with the payments")
@click.pass_obj
def payout(
    config: CollectorConfig,
    period_text: str,
    budget: str,
    basis: str | None,
    as_csv: bool,
    record: bool,
    tx_hash: str | None,
) -> None:
    """Split a budget over a period's workers in proportion to their uptime or credits. The
    table shows each weight in seconds of uptime or in credits; the CSV keeps the export's
    integer weight, in milliseconds or thousandths of a credit."""
    from collector.errors import ApiError
    from collector.money import payouts, reports, units
    from collector.money.payments import parse_amount

    basis = basis or payouts.DEFAULT_BASIS
    period = _period(period_text)
    try:
        amount = int(parse_amount(budget, "budget"))
        tx_hash = payouts.parse_tx_hash(tx_hash) if tx_hash is not None else None
    except (ApiError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    now = utcnow()
    with _open(config).connection_context():
        try:
            found = payouts.plan(period, basis, amount, **reports.timing(config, now))
        except ValueError as exc:
            raise click.ClickException(f"{exc} in {period.label}") from None
        if record:
            try:
                saved, created = payouts.record(
                    found, tx_hash=tx_hash, now=now, settling=payouts.settling(config)
                )
            except (payouts.PeriodOpen, ValueError) as exc:
                raise click.ClickException(str(exc)) from None
            verb = "recorded" if created else "already recorded"
            click.echo(f"{verb} payout {saved.id} for {period.label}", err=True)
    if as_csv:
        for line in found.csv():
            click.echo(line, nl=False)
    else:
        widths = [56 if config.wallet_format == "stellar" else 42, 16, 24, 64, 8]
        weighs = {"uptime": "UPTIME (s)", "credits": "CREDITS"}[basis]
        _echo_row(("WALLET", weighs, "AMOUNT", "RECEIPTS ROOT", "RECEIPTS"), widths)
        for wallet, weight, *rest in found.shares:
            _echo_row((wallet, units.thousandths(weight), *rest), widths)
    click.echo(f"inputs sha256 {found.inputs_sha256}", err=True)
    click.echo(f"export sha256 {found.export_sha256}", err=True)


class _Unreadable(click.ClickException):
    """A receipt file that cannot be checked at all: exit status 2, apart from a check that
    found something (1)."""

    exit_code = 2


@cli.command("verify-receipts")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option(
    "--period",
    "period_text",
    help=f"{_PERIOD_HELP} [default: the file's period, else the hours its receipts span]",
)
@click.option("--json", "as_json", is_flag=True, help="JSON, as POST /receipts/verify answers")
@click.pass_context
def verify_receipts(ctx: click.Context, file: Path, period_text: str | None, as_json: bool) -> None:
    """Check a receipt file (- for standard input) against the keys this collector published,
    and compare the uptime its receipts prove with the collector's records, hour by hour.
    Exit status 0: every receipt is valid and every hour agrees; 1: not; 2: the file (or
    --period) cannot be read."""
    import msgspec

    from collector.uptime import receipt_checks
    from collector.uptime.receipt_check_routes import answered

    config: CollectorConfig = ctx.obj
    now = utcnow()
    asked = _period(period_text) if period_text is not None else None
    try:
        with click.open_file(str(file), "rb") as stream:  # "-": standard input
            data = stream.read()
    except OSError as exc:
        raise _Unreadable(f"cannot read {file}: {exc.strerror}") from None
    try:
        receipts = receipt_checks.read(data, config.wallet_format)
        period = receipt_checks.period_for(receipts, asked, now)
    except receipt_checks.Unreadable as exc:
        raise _Unreadable(f"{file}: {exc}") from None
    with _open(config).connection_context():
        verdict = receipt_checks.check(receipts, period)
    if as_json:
        click.echo(msgspec.json.encode(answered(verdict)))
    else:
        _show_check(verdict)
    ctx.exit(0 if verdict.ok else 1)


def _show_check(verdict) -> None:
    from collector.money import units
    from collector.uptime.receipt_checks import PRECISION

    period, hours = verdict.period, verdict.hours
    click.echo(f"Receipts of {verdict.wallet}")
    if period is None:
        click.echo("Period: none (the file names none and holds no valid receipt): give --period")
    else:
        start, end = format_timestamp(period.start), format_timestamp(period.end)
        named = "" if period.label == f"{start}/{end}" else f"{period.label}: "
        click.echo(f"Period: {named}{start} to {end}")
    valid = verdict.receipts - len(verdict.refused)
    keys = verdict.keys
    signed = f" (signed with key{'s' if len(keys) > 1 else ''} {', '.join(keys)})" if keys else ""
    click.echo(
        f"Checked {_count(verdict.receipts, 'receipt')}: {valid} valid{signed}, "
        f"{len(verdict.refused)} refused{':' if verdict.refused else '.'}"
    )
    for number, reason in verdict.refused:
        click.echo(f"  receipt {number}: {reason}")
    click.echo(f"Uptime the valid receipts prove:     {units.duration(verdict.proven)}")
    click.echo(f"Uptime the collector's records show: {units.duration(verdict.recorded)}")
    if not verdict.worker_known:
        click.echo(
            f"This collector has no worker {verdict.wallet} (deleted, or never known): "
            "the receipts stand alone."
        )
    if hours:
        verb = "disagrees" if len(hours) == 1 else "disagree"
        click.echo(f"{_count(len(hours), 'hour')} {verb} ({PRECISION}):")
        table = [("HOUR (UTC)", "RECEIPTS PROVE", "RECORDS SHOW", "MEANING")]
        for hour in hours:
            table.append(
                (
                    hour.start.strftime("%Y-%m-%d %H:%M"),
                    units.duration(hour.proven),
                    units.duration(hour.recorded),
                    hour.meaning,
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            _echo_row(row, widths)
    elif period is not None:
        click.echo("Every hour agrees.")
    if verdict.ok:
        click.echo("Result: passed: every receipt is valid and every hour agrees.")
    else:
        found = [f"{_count(len(verdict.refused), 'receipt')} refused"] if verdict.refused else []
        found += [f"{_count(len(hours), 'hour')} disagreeing"] if hours else []
        click.echo(f"Result: failed: {', '.join(found)}.")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def main() -> None:
    cli(prog_name="tassium-collector")
