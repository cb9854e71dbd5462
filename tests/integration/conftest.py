"""Fixtures the accounting integration tests share: a migrated database and a private usage lane."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from tests.integration.test_accounting_consumer import Lane, migrate


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def lane(nc: NATS, unique: str) -> AsyncIterator[Lane]:
    lane = Lane(nc.jetstream(), unique)
    await lane.js.add_stream(StreamConfig(name=lane.stream, subjects=[lane.subject], duplicate_window=120))
    yield lane
    await lane.js.delete_stream(lane.stream)
