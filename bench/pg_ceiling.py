"""The database's own ceiling for heartbeats, with pgbench on the same PostgreSQL server:
the statements one heartbeat issued when the ingestion issue was filed (``AS_AT_D1CE3AB``),
those the collector under test issues (``capture_statements``, from the server's log), and
the same effect in one statement (``MINIMAL``, ``MINIMAL_WITH_CONTAINERS``). Used by
bench/ingest.py, which reads the collector's rate against these."""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.fleet import insert_in_batches, wallet
from bench.heartbeat_load import (
    CONTAINERS,
    Connection,
    enroll_directly,
    heartbeat,
    percentile,
    request_bytes,
    tree_cpu,
)
from bench.served import DurablePostgres, served_collector
from protocol.times import utcnow
from tests.factories import connected

# The wallet of worker ``i`` (1-based), spelt by pgbench as '0x' || lpad(to_hex(:wid), 40, '0').
WALLET_SQL = "'0x' || lpad(to_hex(:wid), 40, '0')"
NOW_SQL = "(now() AT TIME ZONE 'UTC')"

AS_AT_D1CE3AB = f"""\\set wid random(1, :workers)
BEGIN;
SELECT "t1"."wallet_address", "t1"."created_at", "t1"."public_key", "t1"."enrolled_at", "t1"."hostname", "t1"."agent_version", "t1"."docker_available", "t1"."last_heartbeat_at", "t1"."last_seen_at", "t1"."tailscale_ip", "t1"."cpu_cores", "t1"."ram_total_gb", "t1"."storage_total_gb", "t1"."last_ping_at", "t1"."credits_millis" FROM "workers" AS "t1" WHERE ("t1"."wallet_address" = {WALLET_SQL}) LIMIT 1 FOR NO KEY UPDATE;
SELECT "t1"."worker_address", "t1"."start_time", "t1"."end_time" FROM "open_windows" AS "t1" WHERE ("t1"."worker_address" = {WALLET_SQL}) LIMIT 1 FOR NO KEY UPDATE;
UPDATE "open_windows" SET "start_time" = "start_time", "end_time" = {NOW_SQL} WHERE ("open_windows"."worker_address" = {WALLET_SQL});
DELETE FROM "worker_containers" WHERE ("worker_containers"."worker_address" = {WALLET_SQL});
INSERT INTO "worker_containers" ("worker_address", "container_name", "port", "container_id", "image", "state", "health", "cpu_percent", "mem_usage_mb") VALUES ({WALLET_SQL}, 'app-0', '0.0.0.0:8000->3000/tcp', '0000000000000000000000000000000000000000000000000000000000000000', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 1.5, 120.0), ({WALLET_SQL}, 'app-1', '0.0.0.0:8001->3000/tcp', '1111111111111111111111111111111111111111111111111111111111111111', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 2.5, 121.0), ({WALLET_SQL}, 'app-2', '0.0.0.0:8002->3000/tcp', '2222222222222222222222222222222222222222222222222222222222222222', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 3.5, 122.0) RETURNING "worker_containers"."id";
INSERT INTO "worker_metrics" ("worker_address", "timestamp", "cpu_cores", "cpu_usage_percent", "ram_total_gb", "ram_used_gb", "storage_total_gb", "storage_used_gb", "container_count", "credits_millis") VALUES ({WALLET_SQL}, {NOW_SQL}, 4, 12.5, 16.0, 6.5, 200.0, 50.0, 3, 570) RETURNING "worker_metrics"."id";
UPDATE "workers" SET "hostname" = 'worker', "agent_version" = '0.1.0', "docker_available" = true, "last_heartbeat_at" = {NOW_SQL}, "last_seen_at" = {NOW_SQL}, "tailscale_ip" = NULL, "cpu_cores" = 4, "ram_total_gb" = 16.0, "storage_total_gb" = 200.0, "credits_millis" = ("workers"."credits_millis" + 570) WHERE ("workers"."wallet_address" = {WALLET_SQL});
COMMIT;
"""  # noqa: E501, S608 - the statements as PostgreSQL logged them, one per line

MINIMAL = f"""\\set wid random(1, :workers)
WITH worker AS (UPDATE workers SET hostname = 'worker', agent_version = '0.1.0', docker_available = true, last_heartbeat_at = {NOW_SQL}, last_seen_at = {NOW_SQL}, tailscale_ip = NULL, cpu_cores = 4, ram_total_gb = 16.0, storage_total_gb = 200.0, credits_millis = credits_millis + 570 WHERE wallet_address = {WALLET_SQL} AND (last_heartbeat_at IS NULL OR last_heartbeat_at < {NOW_SQL}) RETURNING wallet_address), win AS (UPDATE open_windows SET end_time = {NOW_SQL} WHERE worker_address IN (SELECT wallet_address FROM worker) AND {NOW_SQL} - end_time <= interval '1800 seconds' RETURNING worker_address) INSERT INTO worker_metrics (worker_address, "timestamp", cpu_cores, cpu_usage_percent, ram_total_gb, ram_used_gb, storage_total_gb, storage_used_gb, container_count, credits_millis) SELECT wallet_address, {NOW_SQL}, 4, 12.5, 16.0, 6.5, 200.0, 50.0, 3, 570 FROM worker;
"""  # noqa: E501, S608 - pgbench reads one statement per line

# The same with the container list written anew, as a heartbeat whose containers' CPU and
# memory moved since the last one needs (every heartbeat this benchmark sends): the
# equivalent of what the collector does.
_CONTAINER_ROWS = ", ".join(
    f"('{c['containerName']}', '{c['port']}', '{c['id']}', '{c['image']}', 'running', "
    f"'healthy', {c['cpuPercent']}, {c['memUsageMb']})"
    for c in CONTAINERS
)
MINIMAL_WITH_CONTAINERS = MINIMAL.replace(
    " INSERT INTO worker_metrics",
    f""", gone AS (DELETE FROM worker_containers WHERE worker_address IN (SELECT wallet_address FROM worker)), fresh AS (INSERT INTO worker_containers (worker_address, container_name, port, container_id, image, state, health, cpu_percent, mem_usage_mb) SELECT wallet_address, c.* FROM worker, (VALUES {_CONTAINER_ROWS}) AS c) INSERT INTO worker_metrics""",  # noqa: E501, S608
)


@dataclass(frozen=True)
class Ceiling:
    name: str
    tps: float
    latency_ms: float
    cpu_ms: float  # PostgreSQL's CPU time per transaction
    statements: int  # BEGIN and COMMIT included
    p50_ms: float | None = None  # at a fixed rate
    p99_ms: float | None = None


def pgbench(
    server: DurablePostgres,
    database: str,
    name: str,
    script: str,
    args,
    rate: float | None = None,
) -> Ceiling:
    """One pgbench script for ``--seconds`` with the collector's client concurrency; checks
    that the transactions wrote their metrics points (a script matching no worker would
    measure nothing). The minimal one skips, as the collector refuses, the heartbeat of a
    worker whose row a concurrent transaction stamped later (rare with many workers). At a
    fixed ``rate``, also the latencies' p50 and p99, from when each transaction was due (as
    the collector's are measured)."""
    connections = args.clients * args.threads
    count = "SELECT count(*) FROM worker_metrics"
    before = int(server_query(server, database, count))
    cpu_before = tree_cpu(postmaster(server))
    with tempfile.TemporaryDirectory(prefix="tassium-pgbench-") as directory:
        path = Path(directory) / "script.sql"
        path.write_text(script)
        path.chmod(0o644)
        command = [
            "pgbench", "-n", "-f", str(path),
            "-c", str(connections), "-j", str(args.clients), "-T", f"{args.seconds:g}",
            "-D", f"workers={args.workers}",
            "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", database,
        ]  # fmt: skip
        if rate is not None:
            command += ["-R", f"{rate:g}", "-l", f"--log-prefix={directory}/log"]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        latencies = sorted(_logged_latencies(Path(directory)))
    p50, p99 = (
        (percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000)
        if latencies
        else (None, None)
    )
    tps = float(re.search(r"^tps = ([\d.]+)", result.stdout, re.M).group(1))
    latency = float(re.search(r"^latency average = ([\d.]+) ms", result.stdout, re.M).group(1))
    done = int(re.search(r"actually processed: (\d+)", result.stdout).group(1))
    cpu_ms = (tree_cpu(postmaster(server)) - cpu_before) * 1000 / max(1, done)
    written = int(server_query(server, database, count)) - before
    if written < 0.9 * done:
        raise SystemExit(f"pgbench {name}: {done} transactions wrote {written} metrics points")
    statements = len(re.findall(r";$", script, re.M))
    return Ceiling(name, tps, latency, cpu_ms, statements, p50, p99)


def _logged_latencies(directory: Path) -> list[float]:
    """Seconds from when each transaction was due to its end, from pgbench's logs (-l with
    -R: client, transaction, latency µs, script, epoch, µs, schedule lag µs)."""
    found = []
    for log in directory.glob("log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            found.append((int(fields[2]) + int(fields[6])) / 1e6)
    return found


def checkpoints_so_far(server: DurablePostgres) -> int:
    sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return int(server_query(server, "postgres", sql))


def postmaster(server: DurablePostgres) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def server_query(server: DurablePostgres, database: str, sql: str) -> str:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=database
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return str(cursor.fetchone()[0])
    finally:
        connection.close()


def capture_statements(server: DurablePostgres, key: bytes, args) -> str:
    """The statements the collector under test issues for a heartbeat that extends a window,
    as a pgbench script: worker 1 sends two heartbeats to a collector on a database of its
    own that logs every statement, and the second one's are taken from the server's log."""
    database_url = server.fresh_database()
    database = database_url.rsplit("/", 1)[1]
    server.admin(f"ALTER DATABASE {database} SET log_min_duration_statement = 0")
    enroll_directly(database_url, [key])
    with served_collector(processes=1, database_url=database_url) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = Connection(host, int(port))
        for ago in (60, 59):
            ts = utcnow() - timedelta(seconds=ago)
            body, signature = heartbeat(
                1, Ed25519PrivateKey.from_private_bytes(key), ts, args.steady_containers
            )
            status = connection.exchange(request_bytes(body, signature))
            if status != 200:
                raise SystemExit(f"capturing statements: answered {status}")
        connection.close()
    server.admin(f"ALTER DATABASE {database} RESET log_min_duration_statement")
    logged = re.findall(
        r"^\S+ \S+ \S+ \[(\d+)\] LOG:  duration: [\d.]+ ms  (statement|execute [^:]*): "
        r"(.*?)(?=^\S+ \S+ \S+ \[\d+\] |\Z)",
        (server.dir / "log").read_text(),
        re.M | re.S,
    )
    if any(kind != "statement" for _, kind, _ in logged):
        raise SystemExit("capturing statements: the collector binds parameters server-side")
    quoted = f"'{wallet(1)}'"
    last = max(i for i, (_, _, text) in enumerate(logged) if quoted in text)
    pid = logged[last][0]
    ours = [text.strip() for p, _, text in logged if p == pid]
    end = max(i for i, text in enumerate(ours) if text == logged[last][2].strip())
    # Back to the end of the first heartbeat's transaction, forward to this one's.
    start = end
    while start > 0 and ours[start - 1] not in ("COMMIT", "ROLLBACK"):
        start -= 1
    while end + 1 < len(ours) and ours[end] not in ("COMMIT", "ROLLBACK"):
        end += 1
    statements = [
        re.sub(r"'\d{4}-\d\d-\d\dT[\d:.]+'::timestamp", NOW_SQL, text).replace(quoted, WALLET_SQL)
        for text in ours[start : end + 1]
        if not text.startswith(("SET ", "SHOW ", "SELECT pg_"))
    ]
    return "\\set wid random(1, :workers)\n" + "".join(f"{text};\n" for text in statements)


def equivalent(args, *, twins: bool = False) -> tuple[str, str]:
    """The one-statement transaction equivalent to the payload sent: its name and script
    (for the workers of ``add_twins`` with ``twins``)."""
    if args.steady_containers:
        name, script = "same, no containers", MINIMAL  # the collector writes no container list
    else:
        name, script = "minimal", MINIMAL_WITH_CONTAINERS
    if twins:
        script = script.replace("random(1, :workers)", "random(:workers + 1, 2 * :workers)")
    return name, script


def add_twins(database_url: str, workers: int) -> None:
    """Workers ``workers + 1`` to ``2 × workers``, as the collector's own are after their
    first heartbeats (a window open, three containers), for the ceilings measured while the
    collector runs: pgbench stamps a worker's last heartbeat with the present, after which
    the collector would refuse the earlier timestamps its sender has signed."""
    from collector.store.models import OpenWindow, Worker, WorkerContainer

    now = utcnow()
    numbers = range(workers + 1, 2 * workers + 1)
    with connected(database_url):
        insert_in_batches(
            Worker, [{"wallet_address": wallet(n), "created_at": now} for n in numbers], 500
        )
        insert_in_batches(
            OpenWindow,
            [{"worker": wallet(n), "start_time": now, "end_time": now} for n in numbers],
            500,
        )
        containers = [
            {
                "worker": wallet(n),
                "container_name": c["containerName"],
                "port": c["port"],
                "container_id": c["id"],
                "image": c["image"],
                "state": c["state"],
                "health": c["health"],
                "cpu_percent": c["cpuPercent"],
                "mem_usage_mb": c["memUsageMb"],
            }
            for n in numbers
            for c in CONTAINERS
        ]
        insert_in_batches(WorkerContainer, containers, 500)
