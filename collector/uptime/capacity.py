"""Capacity: the machine a worker is credited for (issue 20).

Credits come from what a worker says about itself (collector/uptime/credits.py), so what it may say
is bounded. Its capacity, (CPU cores, RAM GB, storage GB) on its row, is fixed by the first
heartbeat after it enrolls (or enrolls again, with a new key): the machine its owner
enrolled, cut to the operator's maximums. Later heartbeats change it only so:

- a fact reported lower applies at once (``decreased``): crediting less is always safe;
- a fact reported higher applies up to ``capacity_growth`` (a fraction) above the capacity
  fixed at enrollment or by the operator, never beyond the maximums (``grown``); the rest
  waits for the operator's ``tassium-collector capacity approve`` (or ``set``).

The rate reads each fact as reported but at most the capacity. Every change is a
CapacityChange row. Changes are rare, so they are written with the query builder inside the
heartbeat's transaction (its worker row locked); a heartbeat that changes nothing reads
nothing more, except one reporting more than its capacity, which reads the one row its growth
is measured from.
"""

import math
from dataclasses import astuple, fields, replace
from datetime import datetime
from typing import Annotated, Literal, Protocol

from msgspec import Meta

from collector.store import models
from collector.store.db import database, locked
from collector.store.models import Worker
from collector.uptime import credits
from collector.uptime.credits import Capacity
from collector.web.schema import Answer, Timestamp
from protocol.heartbeat import Heartbeat
from protocol.times import format_timestamp

ENROLLED = "enrolled"  # fixed from the first heartbeat after enrollment
CLAMPED = "clamped"  # the same, cut to the operator's maximums
DECREASED = "decreased"
GROWN = "grown"
APPROVED = "approved"  # to what the worker last reported, by the operator
SET = "set"  # by the operator
# What growth is measured from: the machine the owner enrolled, or the operator's word.
BASELINES = (ENROLLED, CLAMPED, APPROVED, SET)

# The fleet report's flags about capacity.
AT_MAXIMUM = "capacity_at_maximum"  # a fact equals (or, set by force, exceeds) a maximum
PENDING = "capacity_pending"  # the worker reports more than it is credited for

_FACTS = tuple(f.name for f in fields(Capacity))
_HELD = (Worker.capacity_cpu_cores, Worker.capacity_ram_gb, Worker.capacity_storage_gb)
_REPORTED = (Worker.cpu_cores, Worker.ram_total_gb, Worker.storage_total_gb)
_NONE = Capacity()


class Bounds(Protocol):
    """The operator's settings: collector/config.py's CollectorConfig is one."""

    capacity_max_cpu_cores: int
    capacity_max_ram_gb: float
    capacity_max_storage_gb: float
    capacity_growth: float  # a fraction of the capacity fixed at enrollment or by the operator
    capacity_max_containers: int


def maximums(bounds: Bounds) -> Capacity:
    return Capacity(
        bounds.capacity_max_cpu_cores, bounds.capacity_max_ram_gb, bounds.capacity_max_storage_gb
    )


def held(worker: Worker) -> Capacity:
    """The capacity the worker is credited for."""
    return Capacity(*(getattr(worker, column.name) for column in _HELD))


def reported(worker: Worker) -> Capacity:
    """What its heartbeats said last (each fact from the last one that had it)."""
    return Capacity(*(getattr(worker, column.name) for column in _REPORTED))


def rate(heartbeat: Heartbeat, worker: Worker, bounds: Bounds | None, now: datetime) -> int:
    """The heartbeat's credit rate, from the worker's capacity after the heartbeat changed
    it as the rules say. Without bounds, from what the heartbeat says alone."""
    if bounds is None:
        return credits.rate(heartbeat)
    system = heartbeat.system
    said = (
        Capacity(system.cpuCores, system.ramTotalGb, system.storageTotalGb)
        if system is not None
        else _NONE
    )
    return credits.rate(
        heartbeat, follow(worker, said, bounds, now), bounds.capacity_max_containers
    )


def follow(worker: Worker, said: Capacity, bounds: Bounds, now: datetime) -> Capacity:
    """The worker's capacity once a heartbeat saying ``said`` is taken: changed, recorded
    and written as the rules say (the worker row locked by the caller)."""
    top, current = maximums(bounds), held(worker)
    if _first_since_enrollment(worker):
        if said == current == _NONE:
            return current
        fixed = _clamped(said, top)
        _record(worker, [(CLAMPED if fixed != said else ENROLLED, fixed)], now)
        return fixed
    fix, lower, higher = {}, {}, {}
    for name, new, old in zip(_FACTS, astuple(said), astuple(current), strict=True):
        if new is None or new == old:
            continue
        if old is None:  # never reported since enrollment: fixed from this first report
            fix[name] = min(new, getattr(top, name))
        elif new < old:
            lower[name] = new
        else:
            higher[name] = new
    steps = []
    if fix:
        current = replace(current, **fix)
        clamped = any(value != getattr(said, name) for name, value in fix.items())
        steps.append((CLAMPED if clamped else ENROLLED, current))
    if lower:
        current = replace(current, **lower)
        steps.append((DECREASED, current))
    if higher:
        base = _baseline(worker.wallet_address) or current
        grown = {}
        for name, new in higher.items():
            ceiling = getattr(top, name)
            if getattr(base, name) is not None:
                ceiling = min(ceiling, getattr(base, name) * (1 + bounds.capacity_growth))
            value = min(new, math.floor(ceiling) if name == "cpu_cores" else ceiling)
            if value > getattr(current, name):
                grown[name] = value
        if grown:
            current = replace(current, **grown)
            steps.append((GROWN, current))
    if steps:
        _record(worker, steps, now)
    return current


def _first_since_enrollment(worker: Worker) -> bool:
    # Both times are the collector's clock: enrolled_at moves when a new key is enrolled,
    # last_seen_at with every heartbeat taken.
    last = worker.last_seen_at
    return last is None or (worker.enrolled_at is not None and last < worker.enrolled_at)


def _clamped(capacity: Capacity, top: Capacity) -> Capacity:
    return Capacity(
        *(
            None if value is None else min(value, limit)
            for value, limit in zip(astuple(capacity), astuple(top), strict=True)
        )
    )


def _baseline(address: str) -> Capacity | None:
    row = (
        models.CapacityChange.select()
        .where(
            (models.CapacityChange.worker == address) & models.CapacityChange.reason.in_(BASELINES)
        )
        .order_by(models.CapacityChange.changed_at.desc(), models.CapacityChange.id.desc())
        .first()
    )
    return None if row is None else Capacity(row.cpu_cores, row.ram_gb, row.storage_gb)


def _record(worker: Worker, steps: list[tuple[str, Capacity]], now: datetime) -> None:
    """Write the last step's capacity to the worker row, and a change row for each step."""
    address = worker.wallet_address
    for reason, capacity in steps:
        models.CapacityChange.create(
            worker=address,
            changed_at=now,
            cpu_cores=capacity.cpu_cores,
            ram_gb=capacity.ram_gb,
            storage_gb=capacity.storage_gb,
            reason=reason,
        )
    final = steps[-1][1]
    values = dict(zip(_HELD, astuple(final), strict=True))
    Worker.update(values).where(Worker.wallet_address == address).execute()
    for column, value in values.items():
        setattr(worker, column.name, value)


# --- the operator -------------------------------------------------------------------------


def approve(address: str, bounds: Bounds, now: datetime, *, force: bool = False) -> Capacity:
    """Credit the worker for what it last reported, within the maximums unless ``force``."""
    with database.atomic():
        worker = _locked(address)
        said = reported(worker)
        if said == _NONE:
            raise ValueError(f"worker {address} has reported no capacity yet")
        pairs = zip(astuple(said), astuple(held(worker)), strict=True)
        approved = Capacity(*(s if s is not None else h for s, h in pairs))
        if not force:
            approved = _clamped(approved, maximums(bounds))
        _record(worker, [(APPROVED, approved)], now)
        return approved


def set_capacity(
    address: str, bounds: Bounds, now: datetime, *, force: bool = False, **facts
) -> Capacity:
    """Credit the worker for the facts given (the others as they are); one above a maximum
    only with ``force``."""
    top = maximums(bounds)
    for name, value in facts.items():
        if not force and value > getattr(top, name):
            raise ValueError(
                f"{name.replace('_', ' ')} {value:g} is above the maximum {getattr(top, name):g}"
            )
    with database.atomic():
        worker = _locked(address)
        capacity = replace(held(worker), **facts)
        _record(worker, [(SET, capacity)], now)
        return capacity


def _locked(address: str) -> Worker:
    worker = locked(Worker.select().where(Worker.wallet_address == address)).get_or_none()
    if worker is None:
        raise LookupError(f"no worker {address}")
    return worker


# --- what the reports show ----------------------------------------------------------------


def flags(worker: Worker, bounds: Bounds) -> list[str]:
    current, said = held(worker), reported(worker)
    found = []
    pairs = zip(astuple(current), astuple(maximums(bounds)), strict=True)
    if any(value is not None and value >= limit for value, limit in pairs):
        found.append(AT_MAXIMUM)
    pairs = zip(astuple(said), astuple(current), strict=True)
    if any(s is not None and h is not None and s > h for s, h in pairs):
        found.append(PENDING)
    return found


class CreditedCapacity(Answer, rename="camel"):
    """What a worker is credited for, as the reports answer it."""

    cpu_cores: Annotated[int, Meta(ge=0)] | None
    ram_gb: Annotated[float, Meta(ge=0)] | None
    storage_gb: Annotated[float, Meta(ge=0)] | None

    @classmethod
    def of(cls, capacity: Capacity) -> "CreditedCapacity | None":
        if capacity == _NONE:
            return None
        return cls(capacity.cpu_cores, capacity.ram_gb, capacity.storage_gb)


class CapacityChange(CreditedCapacity, kw_only=True):
    """One ``capacity_changes`` row, as the worker report answers it."""

    at: Timestamp
    reason: Literal[ENROLLED, CLAMPED, DECREASED, GROWN, APPROVED, SET]

    @classmethod
    def of_row(cls, change: models.CapacityChange) -> "CapacityChange":
        return cls(
            at=format_timestamp(change.changed_at),
            cpu_cores=change.cpu_cores,
            ram_gb=change.ram_gb,
            storage_gb=change.storage_gb,
            reason=change.reason,
        )


def changes(
    address: str, start: datetime, end: datetime, limit: int
) -> tuple[list[CapacityChange], int]:
    """The worker's changes in [start, end): the last ``limit`` of them in time order, and
    how many there were."""
    in_range = (
        (models.CapacityChange.worker == address)
        & (models.CapacityChange.changed_at >= start)
        & (models.CapacityChange.changed_at < end)
    )
    newest = (
        models.CapacityChange.select()
        .where(in_range)
        .order_by(models.CapacityChange.changed_at.desc(), models.CapacityChange.id.desc())
        .limit(limit)
    )
    shown = [CapacityChange.of_row(c) for c in reversed(list(newest))]
    return shown, models.CapacityChange.select().where(in_range).count()
