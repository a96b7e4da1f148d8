"""Credits: what a worker earns for time counted as up.

The original Tassium API paid a fixed amount per heartbeat, so an agent that beat more often
earned more. Here the same per-heartbeat formula is a *rate*, earned per ``PERIOD`` seconds of
uptime: a heartbeat earns that rate over the seconds its window grew by (the time since the
previous heartbeat of the same window, nothing for the heartbeat that opens one). Beating
more often splits the same seconds into more, smaller credits; every credit is a stretch of
uptime. Amounts are integers in thousandths of a credit, so sums are exact.

The facts the formula reads are what the worker says about itself. With a ``Capacity``
(collector/uptime/capacity.py: fixed when the worker enrolls, changed only within the operator's
bounds), each fact counts as reported but at most the capacity, and the containers at most
``max_containers``: an honest machine is credited exactly as the formula says, an inflated
one no more than its capacity.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from protocol.heartbeat import Heartbeat

# The original agents' heartbeat interval: the formula's amount is earned per this much uptime.
PERIOD = timedelta(seconds=300)
# What the original paid a heartbeat without machine facts.
FLAT_RATE = 100
_MICROS_PER_PERIOD = PERIOD // timedelta(microseconds=1)


@dataclass(frozen=True)
class Capacity:
    """The machine a worker is credited for; None: no capacity fixed for that fact."""

    cpu_cores: int | None = None
    ram_gb: float | None = None
    storage_gb: float | None = None


def rate(
    heartbeat: Heartbeat, capacity: Capacity | None = None, max_containers: int | None = None
) -> int:
    """The original formula: credits per PERIOD for the machine this heartbeat describes,
    each fact at most ``capacity``'s (a fact with none fixed counts as 0) and the containers
    at most ``max_containers``, when given."""
    system = heartbeat.system
    # A system without a single fact is no description of a machine: paid as none at all, so
    # that a metrics point (which keeps the facts) always says what the credit was for.
    if system is None or all(value is None for value in vars(system).values()):
        return FLAT_RATE
    cores, ram, storage = system.cpuCores, system.ramTotalGb, system.storageTotalGb
    if capacity is not None:
        cores = _at_most(cores, capacity.cpu_cores)
        ram = _at_most(ram, capacity.ram_gb)
        storage = _at_most(storage, capacity.storage_gb)
    containers = len(heartbeat.containers)
    if max_containers is not None:
        containers = min(containers, max_containers)
    base = 10 + 5 * (cores or 0) + 3 * (ram or 0) + (storage or 0) / 10 + 15 * containers
    busy = (system.cpuUsagePercent or 0) > 5
    return math.floor(base * 1.2) if busy else math.floor(base)


def _at_most(reported, capacity):
    if reported is None or capacity is None:
        return None
    return min(reported, capacity)


def earned_millis(credits_per_period: int, counted: timedelta) -> int:
    """Thousandths of a credit earned at this rate for ``counted`` uptime (rounded down)."""
    micros = counted // timedelta(microseconds=1)
    return credits_per_period * 1000 * micros // _MICROS_PER_PERIOD
