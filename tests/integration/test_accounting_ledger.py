"""The ledger's spend query over NATS: SpendQuery -> SpendAnswer from usage_records in Postgres
(rows stored through the consumer's own mapping and insert, team_id included)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from accounting.mapping import row_from_event
from accounting.store import UsageStore, create_engine
from modelrouter.keys.v1 import keys_pb2
from modelrouter.router.v1 import router_pb2
from tests.integration.accounting_admin import AdminClient, admin
from tests.integration.test_accounting_consumer import usage_event

pytestmark = pytest.mark.integration
__all__ = ["admin"]

DAY_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[UsageStore]:
    store = UsageStore(create_engine(migrated_url))
    yield store
    await store.close()


async def _spend(nc: NATS, admin: AdminClient, **query: object) -> keys_pb2.SpendAnswer:
    reply = await nc.request(admin.settings.ledger_subject, keys_pb2.SpendQuery(**query).SerializeToString(), timeout=5)
    return keys_pb2.SpendAnswer.FromString(reply.data)


async def _record(store: UsageStore, unique: str, n: int, key: str, team: str, started_ms: int, tokens: int) -> None:
    # price 0.001 USD / 1k prompt tokens: `tokens` prompt tokens cost tokens * 1e-6 USD.
    event = usage_event(
        f"{unique}-{n}",
        key_id=key,
        team_id=team,
        price=router_pb2.Price(prompt_per_1k=0.001, completion_per_1k=0.0),
        started_at_unix_ms=started_ms,
        finished_at_unix_ms=started_ms + 10,
    )
    event.usage.prompt_tokens, event.usage.completion_tokens = tokens, 0
    await store.insert([row_from_event(event)])


async def test_spend_per_key_and_per_team_since_the_window_start(
    admin: AdminClient, nc: NATS, store: UsageStore, unique: str
) -> None:
    key_a, key_b, team = f"key_a{unique}", f"key_b{unique}", f"team_{unique}"
    await _record(store, unique, 1, key_a, team, DAY_MS - 1, 1_000_000)  # 1 ms before the window: not counted
    await _record(store, unique, 2, key_a, team, DAY_MS, 1_000)  # exactly at the start: counted (0.001 USD)
    await _record(store, unique, 3, key_a, team, DAY_MS + 3_600_000, 2_000)  # 0.002
    await _record(store, unique, 4, key_b, team, DAY_MS + 1, 500)  # 0.0005, other key, same team
    await _record(store, unique, 5, key_b, "", DAY_MS + 2, 7)  # no team: 0.000007

    assert (await _spend(nc, admin, key_id=key_a, since_ms=DAY_MS)).spent_nano_usd == 3_000_000
    assert (await _spend(nc, admin, key_id=key_a, since_ms=DAY_MS - 1)).spent_nano_usd == 1_003_000_000
    assert (await _spend(nc, admin, key_id=key_a, since_ms=DAY_MS + 1)).spent_nano_usd == 2_000_000
    assert (await _spend(nc, admin, key_id=key_b, since_ms=DAY_MS)).spent_nano_usd == 507_000
    assert (await _spend(nc, admin, team_id=team, since_ms=DAY_MS)).spent_nano_usd == 3_500_000
    nothing = await _spend(nc, admin, key_id=f"key_none{unique}", since_ms=DAY_MS)
    assert (nothing.spent_nano_usd, nothing.error) == (0, "")


async def test_a_fraction_of_a_nano_usd_is_rounded_up(
    admin: AdminClient, nc: NATS, store: UsageStore, unique: str
) -> None:
    await _record(store, unique, 1, f"key_r{unique}", "", DAY_MS, 1)  # 1 token at 0.001/1k = 1e-6 USD
    event = usage_event(
        f"{unique}-tiny",
        key_id=f"key_r{unique}",
        price=router_pb2.Price(prompt_per_1k=0.0000001, completion_per_1k=0.0),
        started_at_unix_ms=DAY_MS,
        finished_at_unix_ms=DAY_MS,
    )
    event.usage.prompt_tokens, event.usage.completion_tokens = 1, 0  # 1e-10 USD
    await store.insert([row_from_event(event)])
    assert (await _spend(nc, admin, key_id=f"key_r{unique}", since_ms=DAY_MS)).spent_nano_usd == 1_001


@pytest.mark.parametrize("query", [{"since_ms": 0}, {"key_id": "k", "team_id": "t", "since_ms": 0}])
async def test_a_query_naming_not_exactly_one_owner_is_an_error(
    admin: AdminClient, nc: NATS, query: dict[str, object]
) -> None:
    answer = await _spend(nc, admin, **query)
    assert "exactly one" in answer.error and answer.spent_nano_usd == 0


async def test_garbage_is_an_error_answer_not_silence(admin: AdminClient, nc: NATS) -> None:
    reply = await nc.request(admin.settings.ledger_subject, b"\xff\xff\xff", timeout=5)
    assert keys_pb2.SpendAnswer.FromString(reply.data).error
