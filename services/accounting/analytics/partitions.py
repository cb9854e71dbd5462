"""Monthly partitions of ``usage_records`` and ``usage_bodies``: made ahead of time, and dropped whole
once past the retention.

Each table has one partition per UTC calendar month of ``started_at`` (``<table>_pYYYYMM``) and a
DEFAULT partition that catches a row no month was made for (a clock far off, an event older than the
oldest month). A month is made by filling a new table with the rows the DEFAULT partition holds for it
and then attaching it, so a month can be made after its rows arrived. Retention drops every month that
ends on or before the cutoff (DROP TABLE: no row-by-row DELETE, no bloat, no vacuum) together with the
rollup's days of those months, and deletes the DEFAULT partition's rows before the cutoff.

Every step holds a transaction-scoped advisory lock, so accounting replicas take turns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

PARTITIONED = ("usage_records", "usage_bodies")
# pg_advisory_xact_lock's key for partition upkeep (any constant no other code uses).
_LOCK_KEY = 0x6D72_7061_7274  # "mrpart"
# Months made ahead of the current one, so a month's first rows never wait for upkeep.
MONTHS_AHEAD = 2


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, moment: date | datetime) -> Month:
        return cls(moment.year, moment.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def partition(self, table: str) -> str:
        return f"{table}_p{self.year:04d}{self.month:02d}"


def default_partition(table: str) -> str:
    return f"{table}_default"


async def existing_months(conn: AsyncConnection, table: str) -> list[Month]:
    """The months ``table`` has a partition for, oldest first."""
    rows = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:table)"
        ),
        {"table": table},
    )
    prefix = f"{table}_p"
    months = [
        Month(int(name[len(prefix) : len(prefix) + 4]), int(name[len(prefix) + 4 :]))
        for (name,) in rows
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    ]
    return sorted(months, key=lambda m: (m.year, m.month))


async def make_month(conn: AsyncConnection, table: str, month: Month) -> bool:
    """Create ``month``'s partition of ``table`` unless it exists, moving into it the rows the DEFAULT
    partition holds for it. True if it was created."""
    name = month.partition(table)
    if await conn.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is not None:
        return False
    bounds = {"lo": month.start, "hi": month.next().start}
    await conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    await conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {default_partition(table)} WHERE started_at >= :lo AND started_at < :hi "
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        bounds,
    )
    start, end = month.start.isoformat(), month.next().start.isoformat()
    await conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')"))
    return True


async def ensure_months(engine: AsyncEngine, now: datetime, ahead: int = MONTHS_AHEAD) -> list[str]:
    """Make the partitions of the current month and ``ahead`` more, of every partitioned table; the
    names of those made."""
    made: list[str] = []
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        for table in PARTITIONED:
            month = Month.of(now)
            for _ in range(ahead + 1):
                if await make_month(conn, table, month):
                    made.append(month.partition(table))
                month = month.next()
    if made:
        log.info("made partitions %s", ", ".join(made))
    return made


async def drop_expired(engine: AsyncEngine, now: datetime, retention_days: int) -> list[str]:
    """Drop the months of every partitioned table that end on or before ``now - retention_days``, with
    the rollup's days before the first month kept; the names of the partitions dropped.

    A month is dropped only whole: rows stay up to a month longer than the retention, never shorter.
    """
    cutoff = now - timedelta(days=retention_days)
    dropped: list[str] = []
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        kept_from: datetime | None = None
        for table in PARTITIONED:
            for month in await existing_months(conn, table):
                if month.next().start <= cutoff:
                    await conn.execute(text(f"DROP TABLE {month.partition(table)}"))
                    dropped.append(month.partition(table))
                    kept_from = max(kept_from or month.next().start, month.next().start)
        if kept_from is not None:
            # The DEFAULT partitions and the rollup must not outlive the months they summarise.
            for table in PARTITIONED:
                await conn.execute(
                    text(f"DELETE FROM {default_partition(table)} WHERE started_at < :t"), {"t": kept_from}
                )
            for rollup in ("usage_daily", "usage_daily_totals"):
                await conn.execute(text(f"DELETE FROM {rollup} WHERE day < :d"), {"d": kept_from.date()})
    if dropped:
        log.info("retention (%d days): dropped %s", retention_days, ", ".join(dropped))
    return dropped


def is_partition(name: str | None) -> bool:
    """Whether ``name`` is one of the monthly or DEFAULT partitions: tables the models do not list, which
    Alembic's comparison (autogenerate, the migration test) must leave alone."""
    if not name:
        return False
    for table in PARTITIONED:
        rest = name.removeprefix(f"{table}_")
        if rest != name and (rest == "default" or (len(rest) == 7 and rest[0] == "p" and rest[1:].isdigit())):
            return True
    return False


def include_in_comparison(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object``: everything but the partitions and their indexes."""
    if type_ == "table":
        return not is_partition(name)
    table = getattr(obj, "table", None)
    return not is_partition(getattr(table, "name", None))
