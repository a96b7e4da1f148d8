"""How the money figures read where people read them (the CLI's tables, refusals), in one
place. Machine formats keep their exact integers or full precision (the JSON answers, the
CSVs); these only turn them into text.

- Credits are printed in credits, exact to the thousandth: ``72.855``, ``3`` when whole (as the
  API answers them and the dashboard shows "72.855 credits"), under a heading that names them.
- A payout's weight is kept in thousandths of its basis's unit (milliseconds of uptime or
  thousandths of a credit) so that the split is exact; people read it in seconds or credits,
  converted with the same rule.
- An uptime fraction is a percentage with one decimal, rounded down, so that a worker short of
  full uptime never reads as ``100.0 %`` (the dashboard's rule).
"""

from datetime import timedelta


def thousandths(value: int) -> str:
    """An integer count of thousandths (``credits_millis``, ``uptime_millis``) in its unit,
    exactly: ``81786`` is ``81.786``, ``1500`` is ``1.5``, ``3000`` is ``3``."""
    whole, rest = divmod(value, 1000)
    return str(whole) if rest == 0 else f"{whole}.{rest:03d}".rstrip("0")


def percent(fraction: float | None) -> str:
    """``0.99995`` as ``99.9 %``; ``-`` when there is no fraction (the worker was not known
    yet in the period)."""
    if fraction is None:
        return "-"
    # Rounded to the millionth first, as the reports round fractions, so that a float such
    # as 0.293 (292.99999… thousandths) is not cut to 29.2.
    tenths = int(round(fraction * 1000, 6))
    return f"{tenths // 10}.{tenths % 10} %"


def duration(value: timedelta) -> str:
    """``24 h``, ``30 min``, ``1 h 30 min``, ``45 s``: whole seconds, cut."""
    minutes, seconds = divmod(value // timedelta(seconds=1), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts + ([f"{seconds} s"] if seconds or not parts else []))
