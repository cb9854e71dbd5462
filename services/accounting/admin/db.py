"""Postgres for the admin API and the ledger's spend queries: an engine of its own with short
timeouts, and one translation of "Postgres is not there" into DatabaseUnavailableError.

The usage consumer's engine waits long (a batch insert may be slow, and it retries anyway); an
admin request is a person or a gateway waiting, so here a dead Postgres must be an answer within a
few seconds, and the next request after it is back must work without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from accounting.store import async_database_url
from common.errors import DatabaseUnavailableError, ModelRouterError


def create_admin_engine(url: str, *, timeout_s: float) -> AsyncEngine:
    # pool_pre_ping: admin traffic is light, and a connection Postgres dropped while idle (restart,
    # an outage) is then replaced instead of failing the first request after the outage.
    return create_async_engine(
        async_database_url(url),
        pool_size=2,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=timeout_s,
        connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
    )


def is_unavailable(exc: BaseException) -> bool:
    """Postgres could not be reached or did not answer in time (not a refusal of what was asked)."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.ProgrammingError):
        return False
    return isinstance(exc, sa_exc.SQLAlchemyError | OSError | asyncio.TimeoutError)


def unavailable_error(exc: BaseException | None = None) -> DatabaseUnavailableError:
    reason = f" ({type(getattr(exc, 'orig', None) or exc).__name__})" if exc is not None else ""
    return DatabaseUnavailableError(
        f"the database is unreachable{reason}: keys and teams cannot be read or changed right now; "
        "keys already known to the gateways keep working. Retry later."
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine, limit_s: float) -> AsyncIterator[AsyncConnection]:
    """One transaction, committed when the block ends; Postgres being away, or the whole block
    taking over ``limit_s`` (each connect and statement is bounded too), -> DatabaseUnavailableError.

    Errors the block raises itself (a 404, a 409) pass through after the rollback.
    """
    try:
        async with asyncio.timeout(limit_s), engine.begin() as conn:
            yield conn
    except ModelRouterError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable_error(exc) from exc
        raise
