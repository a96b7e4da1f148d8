"""Credits: what a worker earns for time counted as up.

The original Tassium API paid a fixed amount per heartbeat, so an agent that beat more often
earned more. Here the same per-heartbeat formula is a *rate*, earned per ``PERIOD`` seconds of
uptime: a heartbeat earns that rate over the seconds its window grew by (the time since the
previous heartbeat of the same window, nothing for the heartbeat that opens one). Beating
more often splits the same seconds into more, smaller credits; every credit is a stretch of
uptime. Amounts are integers in thousandths of a credit, so sums are exact.
"""

import math
from datetime import timedelta

from protocol.heartbeat import Heartbeat

# The original agents' heartbeat interval: the formula's amount is earned per this much uptime.
PERIOD = timedelta(seconds=300)
# What the original paid a heartbeat without machine facts.
FLAT_RATE = 100
_MICROS_PER_PERIOD = PERIOD // timedelta(microseconds=1)


def rate(heartbeat: Heartbeat) -> int:
    """The original formula: credits per PERIOD for the machine this heartbeat describes."""
    system = heartbeat.system
    # A system without a single fact is no description of a machine: paid as none at all, so
    # that a metrics point (which keeps the facts) always says what the credit was for.
    if system is None or all(value is None for value in vars(system).values()):
        return FLAT_RATE
    base = (
        10
        + 5 * (system.cpuCores or 0)
        + 3 * (system.ramTotalGb or 0)
        + (system.storageTotalGb or 0) / 10
        + 15 * len(heartbeat.containers)
    )
    busy = (system.cpuUsagePercent or 0) > 5
    return math.floor(base * 1.2) if busy else math.floor(base)


def earned_millis(credits_per_period: int, counted: timedelta) -> int:
    """Thousandths of a credit earned at this rate for ``counted`` uptime (rounded down)."""
    micros = counted // timedelta(microseconds=1)
    return credits_per_period * 1000 * micros // _MICROS_PER_PERIOD
