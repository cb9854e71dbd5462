"""Postgres side of accounting: the pooled async engine and the idempotent bulk insert."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from accounting.analytics import rollup
from accounting.mapping import BODIES
from accounting.models import UsageRecord
from common.messaging import DependencyUnavailable

TABLE = UsageRecord.__tablename__
# A redelivered event (lost ack, restart mid-batch, publish outside JetStream's dedup window)
# finds its row already there (same request id, same started_at: the partitioned table's key) and
# changes nothing; only the rows really stored reach the rollups and the texts (rollup.WRITE).


class RowsRejectedError(Exception):
    """Postgres refused the rows' values; the same rows would be refused again."""


class StoreUnavailableError(Exception):
    """Postgres could not be reached or failed for a reason unrelated to the rows; retry later."""


class SchemaMissingError(RuntimeError):
    pass


def async_database_url(url: str) -> URL:
    """``url`` with the asyncpg driver (``postgresql://`` is accepted too)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def create_engine(url: str, *, command_timeout_s: float = 15.0) -> AsyncEngine:
    # One batch is written at a time, so a small pool suffices. No pool_pre_ping: it costs three
    # round trips (BEGIN, ping, ROLLBACK) per batch; UsageStore.insert replaces a connection Postgres
    # dropped (restart, idle kill) when the insert fails on it instead.
    return create_async_engine(
        async_database_url(url),
        pool_size=2,
        max_overflow=2,
        connect_args={"timeout": 5, "command_timeout": command_timeout_s},
    )


def _rows_at_fault(exc: BaseException) -> bool:
    """Postgres refused the values themselves (SQLSTATE class 22 data exception or 23 integrity
    violation), or asyncpg could not encode one (e.g. a uint32 beyond INTEGER)."""
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return sqlstate[:2] in ("22", "23") or isinstance(getattr(exc.orig, "__cause__", None), ValueError)


def _row_type_changed(exc: sa_exc.DBAPIError) -> bool:
    """Postgres could not read the batch as rows of its row types (SQLSTATE 42804, "wrong number of
    columns"): a migration changed ``usage_record_in`` or ``usage_body_in`` since this connection's
    asyncpg read them, and asyncpg caches a type's layout per connection. The same connection would
    fail every batch after; a new one reads the layout again (an attribute added for newer code is
    left NULL, and the statement does not read it)."""
    return str(getattr(exc.orig, "sqlstate", None) or "") == "42804"


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, sa_exc.SQLAlchemyError | OSError | asyncio.TimeoutError)


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.healthy = False

    @property
    def display_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    async def check(self) -> None:
        """Raise DependencyUnavailable if Postgres does not answer, SchemaMissingError if the
        table is not there."""
        try:
            async with self._engine.connect() as conn:
                found = await conn.scalar(text("SELECT to_regclass(:table)"), {"table": TABLE})
        except Exception as exc:
            if not _unavailable(exc):
                raise
            self.healthy = False
            raise DependencyUnavailable("postgres", self.display_url, _reason(exc)) from None
        if found is None:
            raise SchemaMissingError(
                f"table {TABLE} does not exist in {self.display_url}; run `make migrate` "
                "(cd services/accounting && python -m alembic upgrade head)"
            )
        self.healthy = True

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` in one transaction, skipping request ids already stored."""
        try:
            await self._insert(list(rows))
        except Exception as exc:
            if _rows_at_fault(exc):
                self.healthy = True
                raise RowsRejectedError(_reason(exc)) from exc
            if not _unavailable(exc):
                raise
            self.healthy = False
            raise StoreUnavailableError(_reason(exc)) from exc
        self.healthy = True

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        row_type_changed = False
        async with self._engine.connect() as conn:  # a failure to connect is not retried here
            try:
                await _write(conn, rows)
                return
            except sa_exc.DBAPIError as exc:
                if _row_type_changed(exc):
                    # Nothing was written (the statement failed as a whole); every pooled connection
                    # holds the old layout, so all are replaced below, not only this one.
                    row_type_changed = True
                    await conn.invalidate()
                elif not exc.connection_invalidated:
                    raise
                # Else the pooled connection was dead (Postgres restarted or dropped it while idle).
                # SQLAlchemy has discarded it and every pooled connection as old, so the retry
                # connects afresh; if the first commit landed after all, the retry skips its rows.
                # If Postgres is really down, the retry's failure is what the caller sees.
        if row_type_changed:
            await self._engine.dispose()
        async with self._engine.connect() as conn:
            await _write(conn, rows)

    async def close(self) -> None:
        await self._engine.dispose()


async def _write(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """The rows, the rollups of those newly stored and their texts: one statement
    (``accounting.analytics.rollup``), sent in autocommit, so that it is its own transaction. Wrapped
    in BEGIN … COMMIT it would be the same transaction at the cost of two more round trips per batch,
    each a client and a server wake-up (about a tenth of a batch's time on a 2-core machine)."""
    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
    await conn.exec_driver_sql(rollup.WRITE_SQL, rollup.arguments(rows, BODIES))


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    return f"{type(inner).__name__}: {inner}".splitlines()[0]
