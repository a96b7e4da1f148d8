"""The tables, as Peewee models. Their shape is fixed by ``migrations.py``; behaviour lives
in the feature modules that use them (deployments, payments, workers, windows), except what
concerns one row alone (a challenge's state and its single use)."""

from datetime import datetime

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from collector.store.db import BaseModel, UTCDateTimeField
from protocol.times import utcnow

WALLET_LENGTH = 64


class Project(BaseModel):
    """A deployment."""

    id = AutoField()
    name = CharField(max_length=20, unique=True)
    url = TextField()
    port = IntegerField(default=3000)
    status = CharField(max_length=10, default="pending")
    github = TextField()
    replicas = IntegerField(default=1)
    creator = CharField(max_length=WALLET_LENGTH)
    created_at = UTCDateTimeField(default=utcnow)
    branch = CharField(max_length=255, default="main")
    # Why the deployer failed, as it said.
    error_message = TextField(null=True)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "projects"


class Payout(BaseModel):
    """A budget split over the workers for a period, recorded once (collector/money/payouts.py)."""

    id = AutoField()
    period = CharField(max_length=64, unique=True)
    period_start = UTCDateTimeField()
    period_end = UTCDateTimeField()
    basis = CharField(max_length=16)  # credits | uptime
    budget = CharField(max_length=78)  # a uint256 as a decimal string
    inputs_sha256 = CharField(max_length=64)
    export_sha256 = CharField(max_length=64)
    tx_hash = CharField(max_length=255, null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "payouts"


class Payment(BaseModel):
    id = AutoField()
    name = CharField(max_length=255)
    amount = CharField(max_length=78)  # a uint256 as a decimal string
    # The wallet paid (a payout's share) or that recorded the payment (the UI's).
    creator = CharField(max_length=WALLET_LENGTH)
    created_at = UTCDateTimeField(default=utcnow)
    payout = ForeignKeyField(Payout, column_name="payout_id", null=True)
    tx_hash = CharField(max_length=255, null=True)
    # A payout's payment: the Merkle root (hex) of the worker's receipts over the period, and
    # how many (collector/money/receipt_trees.py). None for other payments.
    receipts_root = CharField(max_length=64, null=True)
    receipt_count = IntegerField(null=True)

    class Meta:
        table_name = "payments"


class Worker(BaseModel):
    wallet_address = CharField(primary_key=True, max_length=WALLET_LENGTH)
    created_at = UTCDateTimeField(default=utcnow)
    public_key = TextField(null=True)
    enrolled_at = UTCDateTimeField(null=True)
    hostname = CharField(max_length=255, null=True)
    agent_version = CharField(max_length=255, null=True)
    docker_available = BooleanField(null=True)
    # The agent's observation time of the last accepted heartbeat: later ones must exceed it.
    last_heartbeat_at = UTCDateTimeField(null=True)
    # The collector's clock when that heartbeat arrived.
    last_seen_at = UTCDateTimeField(null=True)
    # The machine as its last heartbeat described it.
    tailscale_ip = CharField(max_length=15, null=True)
    cpu_cores = IntegerField(null=True)
    ram_total_gb = FloatField(null=True)
    storage_total_gb = FloatField(null=True)
    # Written in batches by collector/uptime/pings.py: may lag the process that took the ping.
    last_ping_at = UTCDateTimeField(null=True)
    credits_millis = BigIntegerField(default=0)
    # Of the container list last written (collector/uptime/windows.py): an unchanged list is not
    # written again.
    containers_digest = CharField(max_length=64, null=True)
    # How many containers the machine runs, as its last heartbeat said (containerCount, or
    # the list's length): the list holds at most protocol.heartbeat.MAX_LISTED of them.
    container_total = IntegerField(null=True)
    # The capacity its credits are computed from (collector/uptime/capacity.py): fixed when it
    # enrolls, not by what later heartbeats say.
    capacity_cpu_cores = IntegerField(null=True)
    capacity_ram_gb = FloatField(null=True)
    capacity_storage_gb = FloatField(null=True)

    class Meta:
        table_name = "workers"


class UptimeRecord(BaseModel):
    """A closed uptime window."""

    id = AutoField()
    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    time_from = UTCDateTimeField()
    time_to = UTCDateTimeField()
    # The window's last receipt (collector/uptime/receipts.py), which stands for the window:
    # the leaves of a payout's Merkle tree. None before receipts, or with them off.
    receipt = TextField(null=True)

    class Meta:
        table_name = "worker_uptime_records"


class OpenWindow(BaseModel):
    """The one window per worker that heartbeats still extend (the plan's startTime/endTime)."""

    worker = ForeignKeyField(
        Worker, column_name="worker_address", primary_key=True, on_delete="CASCADE"
    )
    start_time = UTCDateTimeField()
    end_time = UTCDateTimeField()
    receipt = TextField(null=True)  # its last heartbeat's receipt, as UptimeRecord's

    class Meta:
        table_name = "open_windows"


class WorkerContainer(BaseModel):
    id = AutoField()
    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    container_name = CharField(max_length=255)
    port = CharField(max_length=255, default="")
    container_id = CharField(max_length=255, null=True)
    image = CharField(max_length=255, null=True)
    state = CharField(max_length=255, null=True)
    health = CharField(max_length=255, null=True)
    cpu_percent = FloatField(null=True)
    mem_usage_mb = FloatField(null=True)

    class Meta:
        table_name = "worker_containers"


class WorkerMetric(BaseModel):
    """One point per accepted heartbeat: the machine as reported, and the credit it earned."""

    id = BigAutoField()
    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    timestamp = UTCDateTimeField()
    cpu_cores = IntegerField(null=True)
    cpu_usage_percent = FloatField(null=True)
    ram_total_gb = FloatField(null=True)
    ram_used_gb = FloatField(null=True)
    storage_total_gb = FloatField(null=True)
    storage_used_gb = FloatField(null=True)
    container_count = IntegerField()
    credits_millis = BigIntegerField()

    class Meta:
        table_name = "worker_metrics"


def credits(millis: int) -> int | float:
    """Credits as shown (a whole number when it is one): thousandths are what is stored and
    summed."""
    whole, rest = divmod(millis, 1000)
    return whole if rest == 0 else millis / 1000


class DockerOutage(BaseModel):
    """A span in which the worker's agent kept reporting Docker unavailable: its heartbeats
    proved the machine alive but not able to run deployments, so the span is not uptime."""

    id = AutoField()
    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    time_from = UTCDateTimeField()
    time_to = UTCDateTimeField()

    class Meta:
        table_name = "docker_outages"


class CreditDay(BaseModel):
    """The credits of a worker's metrics points of one UTC day, kept when the points go."""

    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    day = DateField()
    credits_millis = BigIntegerField()

    class Meta:
        table_name = "worker_credit_days"
        primary_key = CompositeKey("worker", "day")


class CollectorRun(BaseModel):
    """A serving process of the collector: alive from ``started_at`` to at least ``alive_at``."""

    id = AutoField()
    host = CharField(max_length=255)
    pid = IntegerField()
    started_at = UTCDateTimeField()
    alive_at = UTCDateTimeField()

    class Meta:
        table_name = "collector_runs"


class EnrollmentToken(BaseModel):
    """A single-use token that lets a wallet enroll (or replace its key); only its hash is kept."""

    token_hash = CharField(primary_key=True, max_length=64)
    wallet_address = CharField(max_length=WALLET_LENGTH)
    created_at = UTCDateTimeField(default=utcnow)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "enrollment_tokens"


class SweeperLease(BaseModel):
    """Which collector process runs the interval sweeper, until when."""

    name = CharField(primary_key=True, max_length=32)
    holder = CharField(max_length=255)
    expires_at = UTCDateTimeField()

    class Meta:
        table_name = "sweeper_lease"


class OneTimeChallenge(BaseModel):
    """A one-time message that a wallet signs (to enroll a key, to sign in): good once,
    until it expires. Its subclasses are tables; this is none."""

    wallet_address = CharField(max_length=WALLET_LENGTH)
    message = TextField()
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)

    def state(self, now: datetime) -> str:
        if self.used_at is not None:
            return "used"
        return "expired" if self.expires_at <= now else "pending"

    def consume(self, now: datetime) -> bool:
        """Mark it used, if nobody did and it has not expired. The conditional update is the
        single-use guarantee: of two requests racing with one signature, only one sees the
        row change."""
        model = type(self)
        changed = model.update(used_at=now).where(
            (model._meta.primary_key == self.get_id())
            & model.used_at.is_null()
            & (model.expires_at > now)
        )
        return changed.execute() == 1


class EnrollmentChallenge(OneTimeChallenge):
    """Signed to enroll an agent key for the wallet (collector/uptime/enrollment.py)."""

    id = CharField(primary_key=True, max_length=64)
    public_key = TextField()

    class Meta:
        table_name = "enrollment_challenges"


class SignInChallenge(OneTimeChallenge):
    """Signed to open a session for the wallet (collector/identity/sign_in.py)."""

    nonce = CharField(primary_key=True, max_length=64)

    class Meta:
        table_name = "sign_in_challenges"


class WalletSession(BaseModel):
    """A wallet's signed-in session: its bearer token is kept only as a SHA-256 hash."""

    token_hash = CharField(primary_key=True, max_length=64)
    wallet_address = CharField(max_length=WALLET_LENGTH)
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()

    class Meta:
        table_name = "wallet_sessions"


class RateLimit(BaseModel):
    """A fixed-window counter shared by every collector process (collector/web/ratelimits.py)."""

    key = CharField(primary_key=True, max_length=255)
    expires_at = UTCDateTimeField()
    hits = IntegerField()

    class Meta:
        table_name = "rate_limits"


class CapacityChange(BaseModel):
    """A change of the capacity a worker is credited for, and why (collector/uptime/capacity.py)."""

    id = AutoField()
    worker = ForeignKeyField(Worker, column_name="worker_address", on_delete="CASCADE")
    changed_at = UTCDateTimeField()
    cpu_cores = IntegerField(null=True)
    ram_gb = FloatField(null=True)
    storage_gb = FloatField(null=True)
    reason = CharField(max_length=32)

    class Meta:
        table_name = "capacity_changes"


class CollectorKeyRecord(BaseModel):
    """A key the collector signs with, and when it was valid (collector/identity/collector_key.py):
    ``valid_until`` is empty while it is current."""

    key_id = CharField(max_length=16, primary_key=True)
    public_key = CharField(max_length=44, unique=True)
    valid_from = UTCDateTimeField()
    valid_until = UTCDateTimeField(null=True)

    class Meta:
        table_name = "collector_keys"
