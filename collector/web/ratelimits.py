"""Rate limits per client address on the write routes, shared by every process and node.

One step of collector/web/pipeline.py picks the rule from the matched route and method, so a write
route added later is limited by default: ``rate_limit_enrollment`` for ``/workers/enroll``
and every route below it (the enrollment challenges), ``rate_limit_writes`` for every other
POST, PUT, PATCH and DELETE, the ``/api/v1`` dialect's included. The heartbeat routes are
not limited here: many workers may share one address, and they are limited per wallet.

The counting is the ``limits`` library's fixed window (``FixedWindowRateLimiter``) over a
``limits`` storage in the collector's own database, the ``rate_limits`` table, so every
process of every node counts into the same row: one upsert per request and rule, which
starts a window, adds to it, or starts the next one when it is over. The sweeper deletes
windows that are over (``prune``). A database that cannot count lets the request through,
which then fares as it would have without limits (a 503 when the database is down).
"""

import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from peewee import EXCLUDED, Case

from collector.config import CollectorConfig, rate_limit_items
from collector.errors import ApiError
from collector.store.db import DATABASE_DOWN, database
from collector.store.models import RateLimit
from collector.web.steps import Call, Step
from protocol.times import utcnow

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ENROLLMENT = "/workers/enroll"
# Limited per wallet, not per address: a NAT may hide a whole fleet of workers.
HEARTBEATS = frozenset(
    {"/heartbeat", "/heartbeat/ping", "/heartbeats", "/api/v1/heartbeat", "/api/v1/heartbeat/ping"}
)
# IPv6 clients are counted by their /64: one subscriber usually holds a whole one.
IPV6_PREFIX = 64


def rule_for(path: str, method: str) -> str | None:
    """The rule that limits a route (its Flask rule or OpenAPI path: the same text where it
    matters), or None for a route not limited here."""
    if method not in WRITES or path in HEARTBEATS:
        return None
    if path == ENROLLMENT or path.startswith(ENROLLMENT + "/"):
        return "enrollment"
    return "writes"


def client_of(address: str | None) -> str:
    """Whom a request is counted for: its IPv4 address (also when it reached a dual-stack
    socket as ``::ffff:a.b.c.d``), or the /64 network of its IPv6 address."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"  # a UNIX socket's peer has no address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class DatabaseStorage(Storage):
    """A ``limits`` storage in the ``rate_limits`` table: a counter per key with the end of
    its window. ``clock`` gives the time (aware UTC); nodes agree on it through NTP."""

    def __init__(self, clock: Callable[[], datetime] = utcnow):
        super().__init__(wrap_exceptions=True)
        self.clock = clock

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return DATABASE_DOWN

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        # One statement: concurrent requests of every process queue on the row (PostgreSQL's
        # ON CONFLICT locks it; SQLite writes one at a time), and each sees its own count.
        now = self.clock()
        over = RateLimit.expires_at <= now
        query = (
            RateLimit.insert(key=key, expires_at=now + timedelta(seconds=expiry), hits=amount)
            .on_conflict(
                conflict_target=[RateLimit.key],
                update={
                    RateLimit.hits: Case(
                        None, [(over, EXCLUDED.hits)], RateLimit.hits + EXCLUDED.hits
                    ),
                    RateLimit.expires_at: Case(
                        None, [(over, EXCLUDED.expires_at)], RateLimit.expires_at
                    ),
                },
            )
            .returning(RateLimit.hits)
        )
        [(hits,)] = list(query.tuples().execute())
        return hits

    def _current(self, key: str):
        return RateLimit.select().where(
            (RateLimit.key == key) & (RateLimit.expires_at > self.clock())
        )

    def get(self, key: str) -> int:
        return self._current(key).select(RateLimit.hits).scalar() or 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends, in seconds since the epoch (now if it has none)."""
        ends = self._current(key).select(RateLimit.expires_at).scalar()
        return (ends or self.clock()).timestamp()

    def check(self) -> bool:
        try:
            database.execute_sql("SELECT 1")
        except DATABASE_DOWN:
            return False
        return True

    def reset(self) -> int:
        return RateLimit.delete().execute()

    def clear(self, key: str) -> None:
        RateLimit.delete().where(RateLimit.key == key).execute()


def prune(now: datetime) -> int:
    """Delete the windows that are over; return how many (the sweeper's)."""
    return RateLimit.delete().where(RateLimit.expires_at <= now).execute()


@dataclass(frozen=True)
class Rule:
    name: str  # in the counter's key
    what: str  # in the refusal
    items: tuple[RateLimitItem, ...]  # none: off


class RateLimits:
    """The configured rules, counted in the database."""

    def __init__(self, config: CollectorConfig, clock: Callable[[], datetime] = utcnow):
        self.clock = clock
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(clock))
        self.rules = {
            "enrollment": Rule(
                "enrollment",
                "the enrollment routes",
                tuple(rate_limit_items(config.rate_limit_enrollment)),
            ),
            "writes": Rule(
                "writes", "the write routes", tuple(rate_limit_items(config.rate_limit_writes))
            ),
        }

    def check(self, rule_name: str, address: str | None) -> None:
        """Count a request; ApiError 429 once the client is over a limit of the rule."""
        rule = self.rules[rule_name]
        client = client_of(address)
        # Every limit counts the request (say 10 a minute and 100 an hour).
        refused = [item for item in rule.items if not self.limiter.hit(item, rule.name, client)]
        if refused:
            wait = max(self._retry_after(item, rule.name, client) for item in refused)
            raise ApiError(
                429,
                f"too many requests from {client} to {rule.what}; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset_at = self.limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset_at - self.clock().timestamp()))


class LimitWrites(Step):
    """The step, after the body is read (a body refused anyway is not counted). The limits
    are the app's ``tassium.ratelimits`` (``RateLimits``)."""

    def before(self, call: Call) -> None:
        name = call.rule and rule_for(call.rule, call.method)  # no rule: 404, 405
        if not name:
            return
        try:
            limits = current_app.extensions["tassium.ratelimits"]
            limits.check(name, call.environ.get("REMOTE_ADDR"))
        except StorageError as exc:
            # Let the request through: its route answers as it would without limits.
            log.debug("rate limit not counted: %s", exc)
