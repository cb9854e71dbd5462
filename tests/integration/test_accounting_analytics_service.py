"""Accounting's analytics responder answers every envelope, bad ones and a Postgres away included,
with an OpenAI-shaped error, never by raising or hanging."""

from __future__ import annotations

import time

import orjson
import pytest

from accounting.admin.db import create_admin_engine
from accounting.analytics.service import AnalyticsService

pytestmark = pytest.mark.integration


async def _ask(service: AnalyticsService, envelope: object) -> tuple[int, dict[str, object]]:
    answer = orjson.loads(await service.answer(orjson.dumps(envelope)))
    return answer["status"], answer["body"]


async def test_bad_envelopes_are_400(migrated_url: str) -> None:
    engine = create_admin_engine(migrated_url, timeout_s=3)
    service = AnalyticsService(engine, 3)
    try:
        assert (await _ask(service, {"op": "drop_table"}))[0] == 400
        status, body = await _ask(service, {"op": "usage", "scope": {}, "query": {"days": 0}})
        assert status == 400 and body["error"]["param"] == "days"  # type: ignore[index]
        status, body = await _ask(service, {"op": "requests", "scope": {"nope": 1}, "query": {}})
        assert status == 400
        assert orjson.loads(await service.answer(b"not json"))["status"] == 400
        status, body = await _ask(service, {"op": "usage", "scope": {"key_id": "key_none"}, "query": {}})
        assert status == 200 and body["total_requests"] == 0 and body["success_rate"] is None
    finally:
        await engine.dispose()


async def test_postgres_away_is_a_503_within_the_timeout() -> None:
    engine = create_admin_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere", timeout_s=1)
    service = AnalyticsService(engine, 1)
    try:
        started = time.monotonic()
        status, body = await _ask(service, {"op": "usage", "scope": {}, "query": {}})
        assert status == 503 and body["error"]["code"] == "database_unavailable"  # type: ignore[index]
        assert time.monotonic() - started < 5
    finally:
        await engine.dispose()
