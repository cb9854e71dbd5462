"""Limits and budgets that hold exactly across replicas: three gateways, each on a router of its own
(three routers), sharing Redis, NATS and Postgres, all as processes. 300 concurrent requests spread
over the three gateways on one key: rpm 100 admits exactly 100; tpm, max_parallel and a team's rpm
shared by two keys are exact the same way; a daily budget is never overspent. A key created on one
gateway works at once on every gateway, and once revoked on one, every gateway refuses it within 1 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.helpers import OwnStack, own_stack

pytestmark = pytest.mark.e2e

MASTER = "sk-master-replicas-0123456789"
CONCURRENCY = 300


def config(u: str) -> str:
    return f"""
providers:
  fake: {{adapter: fake}}
  slow: {{adapter: fake, options: {{latency_ms: "1500"}}}}
deployments:
  - {{id: fast-{u}, model: fast, provider: fake, price: {{prompt_per_1k: 0.1, completion_per_1k: 0.2}}}}
  - {{id: slow-{u}, model: slow, provider: slow}}
"""


class Replicas:
    def __init__(self, stack: OwnStack, gateways: list[str]) -> None:
        self.stack, self.gateways = stack, gateways
        self.admin = httpx.AsyncClient(base_url=gateways[0], headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)

    async def create(self, path: str = "/admin/keys", **fields: Any) -> dict[str, Any]:
        response = await self.admin.post(path, json={"name": f"n-{uuid.uuid4().hex[:6]}", **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def blast(
        self, keys: list[str], model: str = "fast", n: int = CONCURRENCY, **extra: Any
    ) -> list[httpx.Response]:
        """``n`` requests at once, round-robin over the gateways (and over ``keys``)."""
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:

            async def one(i: int) -> httpx.Response:
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
                headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
                return await http.post(
                    f"{self.gateways[i % len(self.gateways)]}/v1/chat/completions", json=body, headers=headers
                )

            return list(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.fixture(scope="module")
def replicas(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    u = uuid.uuid4().hex[:8]
    with own_stack(
        config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("replicas")),
        env={
            "MODELROUTER_MASTER_KEY": MASTER,
        },
    ) as running:
        stack = running.stack
        gateways = [running.base_url]
        for n in (2, 3):
            router_port, gateway_port = free_port(), free_port()
            stack.start_replica("router", f"router{n}", router_port)
            stack.start_replica("gateway", f"gateway{n}", gateway_port, env={"ROUTER_ADDR": f"127.0.0.1:{router_port}"})
            gateways.append(f"http://127.0.0.1:{gateway_port}")
        yield Replicas(running, gateways)


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def test_a_new_key_works_at_once_everywhere_and_a_revocation_reaches_every_gateway_within_1_s(
    replicas: Replicas,
) -> None:
    created = await replicas.create()
    ok = await replicas.blast([created["key"]], n=len(replicas.gateways))
    assert statuses(ok) == {200: 3}, [r.text for r in ok]
    revoked = await replicas.admin.delete(f"/admin/keys/{created['id']}")
    assert revoked.status_code == 200
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        for gateway in replicas.gateways:
            while True:
                answer = await http.post(
                    f"{gateway}/v1/chat/completions",
                    json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {created['key']}"},
                )
                if answer.status_code == 401:
                    assert answer.json()["error"]["code"] == "key_revoked"
                    break
                assert time.monotonic() - started < 1.0, f"{gateway} still accepts a key revoked 1 s ago"
                await asyncio.sleep(0.02)


async def test_rpm_100_admits_exactly_100_of_300_concurrent_requests(replicas: Replicas) -> None:
    created = await replicas.create(rpm=100)
    seen = statuses(await replicas.blast([created["key"]]))
    assert seen == {200: 100, 429: 200}, seen


async def test_tpm_admits_exactly_what_fits_and_actual_use_never_passes_it(replicas: Replicas) -> None:
    probe = await replicas.blast([(await replicas.create())["key"]], n=1, max_tokens=10)
    assert probe[0].status_code == 200
    # Each request reserves the same tokens: its body's estimate (bytes / 4) and max_tokens 10.
    per_request = len(probe[0].request.content) // 4 + 10
    # On the slow model nothing settles while the 300 arrive: exactly 50 reservations fit.
    held = await replicas.create(tpm=50 * per_request)
    seen = statuses(await replicas.blast([held["key"]], model="slow", max_tokens=10))
    assert seen == {200: 50, 429: 250}, seen
    # On the fast one, settled requests give back what they did not use, so more fit; what they
    # really used still never passes the limit.
    fast = await replicas.create(tpm=50 * per_request)
    seen = statuses(await replicas.blast([fast["key"]], max_tokens=10))
    rows = await usage_of(replicas, fast["id"])
    assert seen[200] >= 50 and sum(r["total_tokens"] for r in rows) <= 50 * per_request, (seen, per_request)


async def test_max_parallel_admits_exactly_that_many_at_once(replicas: Replicas) -> None:
    created = await replicas.create(max_parallel=10)
    seen = statuses(await replicas.blast([created["key"]], model="slow", n=60))
    assert seen == {200: 10, 429: 50}, seen
    # Once those ended (settled), the slots are free again.
    again = statuses(await replicas.blast([created["key"]], n=6))
    assert again == {200: 6}, again


async def test_a_team_rpm_binds_the_sum_of_its_keys(replicas: Replicas) -> None:
    team = await replicas.create("/admin/teams", rpm=100)
    keys = [(await replicas.create(team_id=team["id"]))["key"] for _ in range(2)]
    seen = statuses(await replicas.blast(keys))
    assert seen == {200: 100, 429: 200}, seen


async def test_a_daily_budget_is_never_overspent(replicas: Replicas) -> None:
    created = await replicas.create(daily_budget_usd=0.02)
    responses = await replicas.blast([created["key"]], max_tokens=16)
    seen = statuses(responses)
    assert seen[200] > 0 and seen[429] > 0 and set(seen) == {200, 429}, seen
    refusals = {r.json()["error"]["code"] for r in responses if r.status_code == 429}
    assert refusals == {"insufficient_quota"}
    rows = await usage_of(replicas, created["id"])
    assert len(rows) == CONCURRENCY
    assert sum(1 for r in rows if r["status"] == "success") == seen[200]
    assert float(sum(r["cost_usd"] for r in rows)) <= 0.02


async def usage_of(replicas: Replicas, key_id: str, expected: int = CONCURRENCY) -> list[Any]:
    """The key's usage rows, once all ``expected`` are written (accounting lags a little)."""
    conn = await asyncpg.connect(replicas.stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = list(await conn.fetch("SELECT * FROM usage_records WHERE key_id = $1", key_id))
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
