"""The analytics API over NATS (``subjects.ANALYTICS``): one JSON envelope in (``common.analytics``),
``{"status", "body"}`` out, errors in OpenAI's shape. Every query runs in a read-only transaction on
accounting's short-timeout engine: a Postgres that does not answer is a 503 within seconds, never a
hung gateway request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accounting.admin.db import is_unavailable
from accounting.analytics import queries
from common.analytics import QUERIES, Scope, parse
from common.errors import DatabaseUnavailableError, InvalidRequestError, ModelRouterError

log = logging.getLogger(__name__)


class AnalyticsService:
    def __init__(self, engine: AsyncEngine, timeout_s: float) -> None:
        self._engine, self._timeout_s = engine, timeout_s

    async def answer(self, data: bytes) -> bytes:
        """The answer envelope for one request envelope; never raises."""
        try:
            status, body = 200, await self._answer(data)
        except ModelRouterError as exc:
            status, body = exc.status, exc.to_dict()
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("analytics: the database is unreachable (%s)", type(exc).__name__)
                error: ModelRouterError = DatabaseUnavailableError(
                    f"The usage database is unreachable ({type(exc).__name__}); try again later."
                )
            else:
                log.exception("analytics request failed")
                error = ModelRouterError("The analytics request failed inside accounting.")
            status, body = error.status, error.to_dict()
        return orjson.dumps({"status": status, "body": body})

    async def _answer(self, data: bytes) -> Any:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("the analytics request is not JSON") from None
        if not isinstance(raw, dict) or raw.get("op") not in QUERIES:
            raise InvalidRequestError(
                f"unknown analytics operation {raw.get('op') if isinstance(raw, dict) else None!r}"
            )
        op = raw["op"]
        scope = parse(Scope, raw.get("scope") or {})
        query = parse(QUERIES[op], raw.get("query") or {})
        async with asyncio.timeout(self._timeout_s), self._engine.connect() as conn:
            # Read-only: a bug here can never write, and Postgres may skip some bookkeeping.
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            return await ANSWERS[op](conn, scope, query)


Answerer = Callable[[AsyncConnection, Scope, Any], Awaitable[Any]]
ANSWERS: dict[str, Answerer] = {
    "usage": queries.usage,
    "requests": queries.requests,
    "request": queries.request,
    "user_stats": lambda conn, scope, _: queries.user_stats(conn, scope),
}
