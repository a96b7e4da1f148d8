"""The benchmarks' made-up fleet: workers' wallets by number, and bulk inserts of their rows
in batches (one statement of a million rows would exhaust SQLite's parameter limit)."""

from collections.abc import Iterator

from peewee import Model

from collector.store.db import database


def wallet(number: int) -> str:
    """Worker ``number``'s wallet, as pgbench spells it: '0x' || lpad(to_hex(n), 40, '0')."""
    return f"0x{number:040x}"


def wallet_batches(count: int, size: int) -> Iterator[list[str]]:
    """The wallets of workers 0 to ``count - 1``, ``size`` at a time."""
    for first in range(0, count, size):
        yield [wallet(n) for n in range(first, min(first + size, count))]


def insert_in_batches(model: type[Model], rows: list[dict], size: int) -> None:
    """``rows`` into ``model``'s table, ``size`` to a statement and a transaction."""
    for first in range(0, len(rows), size):
        with database.atomic():
            model.insert_many(rows[first : first + size]).execute()
