"""Keys' and teams' limits and budgets in the router (``router.limits``) against the real Redis, and
the ledger's seed over the real NATS with a fake accounting answering it.

Each test has its own key prefix, key ids, deployments and ledger subject. Concurrency across
router replicas is ``test_router_limits_replicas.py``'s; here one process drives the scripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from common.errors import DatabaseUnavailableError
from common.pricing import max_cost_nano_usd
from router.limits.admission import KeyLimits
from router.limits.ledger import SpendLedger
from router.limits.refusals import KeyBudgetExceededError, KeyRateLimitError, usd
from router.selection import Candidate
from router.state import Pick, RouterState
from tests.integration.limits_helpers import FakeLedger, fake_ledger, governed, settlement
from tests.integration.test_router_state import MINUTE_MS, candidates, prefix, redis, redis_now_ms, state

pytestmark = pytest.mark.integration
__all__ = ["prefix", "redis", "state"]  # the Redis fixtures, shared with test_router_state

NANO = 1_000_000_000


@pytest.fixture
async def ledger(nc: NATS, unique: str) -> AsyncIterator[tuple[SpendLedger, FakeLedger]]:
    spend = SpendLedger(f"test.{unique}.ledger", timeout_s=0.5)
    spend.connection = nc
    async with fake_ledger(nc, spend.subject) as fake:
        yield spend, fake


@pytest.fixture
def limits(state: RouterState, ledger: tuple[SpendLedger, FakeLedger]) -> KeyLimits:
    return KeyLimits(state, ledger[0])


@pytest.fixture
def cs(unique: str) -> list[Candidate]:
    return candidates(
        unique,
        {"id": "a", "price": {"prompt_per_1k": 0.001, "completion_per_1k": 0.002}},
        {"id": "b", "priority": 1, "price": {"prompt_per_1k": 0.003, "completion_per_1k": 0.004}},
    )


async def in_early_window(redis: Redis, window_ms: int = MINUTE_MS, room_ms: int = 15_000) -> None:
    """Wait, if needed, until the rate window has ``room_ms`` left, so a test's requests share one."""
    left = window_ms - await redis_now_ms(redis) % window_ms
    if left < room_ms:
        await asyncio.sleep(left / 1000 + 0.05)


async def admit_all(limits: KeyLimits, cs: list[Candidate], requests: list) -> list[Pick | Exception]:  # type: ignore[type-arg]
    return list(await asyncio.gather(*(limits.admit(r, cs) for r in requests), return_exceptions=True))


# --- rate limits ---------------------------------------------------------------------------------


async def test_key_rpm_refuses_with_openai_message_and_states(
    limits: KeyLimits, cs: list[Candidate], redis: Redis, unique: str
) -> None:
    await in_early_window(redis)
    key = f"key_{unique}"
    for i in range(3):
        pick = await limits.admit(governed("m", key, f"r{i}", key={"rpm": 3}), cs)
        assert pick.requests is not None and pick.requests.limit == 3
        assert pick.requests.remaining == 2 - i
        assert 0 < pick.requests.reset_ms <= 2 * MINUTE_MS
    with pytest.raises(KeyRateLimitError) as info:
        await limits.admit(governed("m", key, "r3", key={"rpm": 3}), cs)
    error = info.value
    assert error.code == "rate_limit_exceeded" and error.status == 429
    assert error.message.startswith(
        f"Rate limit reached for key {key} (requests per minute): limit 3, used 3, requested 1. Please try again in "
    )
    assert error.retry_after_s is not None and 0 < error.retry_after_s <= 120
    assert error.requests is not None and (error.requests.limit, error.requests.remaining) == (3, 0)
    assert error.tokens is None


async def test_limit_of_zero_admits_nothing(limits: KeyLimits, cs: list[Candidate], unique: str) -> None:
    with pytest.raises(KeyRateLimitError, match="limit 0"):
        await limits.admit(governed("m", f"key_{unique}", "r", key={"rpm": 0}), cs)


async def test_tpm_reserves_estimate_plus_max_output_and_settle_gives_back_the_unused(
    limits: KeyLimits, cs: list[Candidate], redis: Redis, unique: str
) -> None:
    await in_early_window(redis)
    key, tpm = f"key_{unique}", {"tpm": 1000}
    first = await limits.admit(governed("m", key, "r1", key=tpm, estimated_tokens=100, max_output_tokens=300), cs)
    assert first.tokens is not None and (first.tokens.limit, first.tokens.remaining) == (1000, 600)
    await limits.admit(governed("m", key, "r2", key=tpm, estimated_tokens=100, max_output_tokens=300), cs)
    with pytest.raises(KeyRateLimitError, match=r"\(tokens per minute\): limit 1000, used 800, requested 400"):
        await limits.admit(governed("m", key, "r3", key=tpm, estimated_tokens=100, max_output_tokens=300), cs)
    # r1 used 150 of its 400: 250 come back, and 400 fit again.
    await limits.settle([settlement("r1", key, used_tokens=150)])
    third = await limits.admit(governed("m", key, "r3", key=tpm, estimated_tokens=100, max_output_tokens=300), cs)
    assert third.tokens is not None and third.tokens.remaining == 1000 - 150 - 400 - 400


async def test_max_parallel_counts_open_reservations_until_settled(
    limits: KeyLimits, cs: list[Candidate], unique: str
) -> None:
    key, par = f"key_{unique}", {"max_parallel": 2}
    await limits.admit(governed("m", key, "r1", key=par), cs)
    await limits.admit(governed("m", key, "r2", key=par), cs)
    with pytest.raises(KeyRateLimitError) as info:
        await limits.admit(governed("m", key, "r3", key=par), cs)
    assert "(parallel requests): limit 2, used 2, requested 1. Please try again in 1s." in info.value.message
    assert info.value.retry_after_s == 1
    await limits.settle([settlement("r1", key)])
    await limits.admit(governed("m", key, "r3", key=par), cs)


async def test_failover_attempt_skips_the_key_and_a_repeated_first_attempt_reserves_once(
    limits: KeyLimits, cs: list[Candidate], unique: str
) -> None:
    key, par = f"key_{unique}", {"max_parallel": 1, "rpm": 5}
    await limits.admit(governed("m", key, "r1", key=par), cs)
    # The same request failing over: admitted although the key's only parallel slot is its own.
    retry = governed("m", key, "r1", key=par, first=False)
    retry.exclude_deployments.append(cs[0].deployment_id)
    pick = await limits.admit(retry, cs[1:])
    assert pick.chosen == 0 and pick.requests is not None and pick.requests.remaining == 4
    # The gateway sending the first attempt again (its stream broke): no second reservation.
    await limits.admit(governed("m", key, "r1", key=par), cs)
    await limits.settle([settlement("r1", key)])
    await limits.admit(governed("m", key, "r2", key=par), cs)


async def test_team_limit_binds_the_sum_of_its_keys(limits: KeyLimits, cs: list[Candidate], unique: str) -> None:
    team = f"team_{unique}"
    picks = await admit_all(
        limits,
        cs,
        [
            governed("m", f"key_{unique}_{i % 2}", f"r{i}", team_id=team, team={"max_parallel": 3}, key={"rpm": 100})
            for i in range(6)
        ],
    )
    refused = [p for p in picks if isinstance(p, Exception)]
    assert len(refused) == 3
    assert all(isinstance(e, KeyRateLimitError) and f"for team {team} (parallel" in e.message for e in refused)


async def test_reservation_expires_by_itself(limits: KeyLimits, cs: list[Candidate], unique: str) -> None:
    key, par = f"key_{unique}", {"max_parallel": 1}
    await limits.admit(governed("m", key, "r1", key=par, hold_s=1), cs)
    with pytest.raises(KeyRateLimitError):
        await limits.admit(governed("m", key, "r2", key=par, hold_s=1), cs)
    await asyncio.sleep(1.1)
    await limits.admit(governed("m", key, "r2", key=par, hold_s=1), cs)


async def test_deployment_limits_still_apply_and_refusing_them_reserves_nothing(
    limits: KeyLimits, redis: Redis, unique: str
) -> None:
    await in_early_window(redis)
    cs = candidates(unique, {"id": "a", "rpm": 1})
    key, lim = f"key_{unique}", {"rpm": 10, "max_parallel": 5}
    pick = await limits.admit(governed("m", key, "r1", key=lim), cs)
    # The key's rpm shows in the headers, not the deployment's.
    assert pick.requests is not None and pick.requests.limit == 10
    with pytest.raises(Exception, match="over its rate limit"):
        await limits.admit(governed("m", key, "r2", key=lim), cs)
    base = limits.subject_key("key", key)
    assert await redis.zcard(f"{base}:open") == 1


async def test_ungoverned_answer_shows_the_deployments_limits(state: RouterState, redis: Redis, unique: str) -> None:
    await in_early_window(redis)
    cs = candidates(unique, {"id": "a", "rpm": 7, "tpm": 500})
    pick = await state.pick("m", cs, 100)
    assert pick.requests is not None and (pick.requests.limit, pick.requests.remaining) == (7, 6)
    assert pick.tokens is not None and (pick.tokens.limit, pick.tokens.remaining) == (500, 400)
    plain = await state.pick("m", candidates(unique + "x", {"id": "a"}), 100)
    assert plain.requests is None and plain.tokens is None


# --- budgets -------------------------------------------------------------------------------------


async def test_budget_seeds_from_the_ledger_and_refuses_naming_the_budget(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], redis: Redis, unique: str
) -> None:
    _, fake = ledger
    key = f"key_{unique}"
    fake.spent[("key", key)] = 4_980_000_000  # $4.98 of $5.00 already in Postgres
    budget = {"daily_budget_usd": 5.0}
    # At the pricier deployment's prices (b, the fallback): 1000 prompt + 2 output tokens = $0.003008.
    cost = max_cost_nano_usd(1000, 2, 0.003, 0.004)
    assert cost == 3_008_000
    for i in range(6):  # 6 x 0.003008 = 0.018048 <= 0.02
        await limits.admit(governed("m", key, f"r{i}", key=budget, estimated_tokens=1000, max_output_tokens=2), cs)
    assert len(fake.queries) == 1
    now = await redis_now_ms(redis)
    assert fake.queries[0].key_id == key and fake.queries[0].since_ms == now - now % 86_400_000
    with pytest.raises(KeyBudgetExceededError) as info:
        await limits.admit(governed("m", key, "r6", key=budget, estimated_tokens=1000, max_output_tokens=2), cs)
    error = info.value
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    tomorrow = (now // 86_400_000 + 1) * 86_400_000
    from datetime import UTC, datetime

    resets = datetime.fromtimestamp(tomorrow / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert error.message == (
        f"Budget exceeded for key {key}: daily budget $5.00, spent $4.98 (+{usd(6 * cost)} reserved by requests "
        f"in flight); this request may cost up to {usd(cost)}. It resets at {resets}."
    )
    # A settlement turns the reservation into the real, smaller cost: room again.
    await limits.settle([settlement(f"r{i}", key, cost_nano_usd=1_000_000) for i in range(6)])
    await limits.admit(governed("m", key, "r6", key=budget, estimated_tokens=1000, max_output_tokens=2), cs)
    spent = await redis.get(f"{limits.subject_key('key', key)}:sd:{now // 86_400_000}")
    assert int(spent) == 4_986_000_000


async def test_monthly_budget_of_a_team_seeds_from_the_month_start(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], redis: Redis, unique: str
) -> None:
    _, fake = ledger
    team = f"team_{unique}"
    fake.spent[("team", team)] = 10 * NANO
    with pytest.raises(KeyBudgetExceededError, match=f"for team {team}: monthly budget \\$10.00, spent \\$10.00;"):
        await limits.admit(
            governed("m", f"key_{unique}", "r", team_id=team, team={"monthly_budget_usd": 10}, max_output_tokens=1), cs
        )
    from datetime import UTC, datetime

    now = datetime.fromtimestamp(await redis_now_ms(redis) / 1000, UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    assert [(q.team_id, q.since_ms) for q in fake.queries] == [(team, int(month_start.timestamp() * 1000))]


async def test_settle_is_idempotent(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], redis: Redis, unique: str
) -> None:
    key = f"key_{unique}"
    await limits.admit(
        governed("m", key, "r1", key={"daily_budget_usd": 1.0, "tpm": 10_000}, max_output_tokens=100), cs
    )
    once = settlement("r1", key, used_tokens=50, cost_nano_usd=123)
    await limits.settle([once])
    await limits.settle([once, once])
    base = limits.subject_key("key", key)
    now = await redis_now_ms(redis)
    assert int(await redis.get(f"{base}:sd:{now // 86_400_000}")) == 123
    tokens = await redis.get(f"{base}:t:{now // MINUTE_MS}") or await redis.get(f"{base}:t:{now // MINUTE_MS - 1}")
    assert int(tokens) == 50
    assert int(await redis.hget(f"{base}:held", "$cost")) == 0


async def test_settle_never_creates_a_spend_counter(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], redis: Redis, unique: str
) -> None:
    """A counter lost while the request ran is rebuilt from the ledger, which has this cost: a settle
    creating it would restart the budget from this one cost."""
    key = f"key_{unique}"
    await limits.admit(governed("m", key, "r1", key={"daily_budget_usd": 1.0}, max_output_tokens=100), cs)
    base = limits.subject_key("key", key)
    day = await redis_now_ms(redis) // 86_400_000
    await redis.delete(f"{base}:sd:{day}")
    await limits.settle([settlement("r1", key, cost_nano_usd=500)])
    assert await redis.exists(f"{base}:sd:{day}") == 0


async def test_ledger_unreachable_refuses_with_503_never_admits(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], unique: str
) -> None:
    _, fake = ledger
    fake.error = "connection refused"
    with pytest.raises(DatabaseUnavailableError, match="the usage ledger is unreachable") as info:
        await limits.admit(governed("m", f"key_{unique}", "r", key={"daily_budget_usd": 5.0}), cs)
    assert info.value.status == 503 and info.value.code == "database_unavailable"


async def test_ledger_not_answering_refuses_with_503(
    state: RouterState, cs: list[Candidate], nc: NATS, unique: str
) -> None:
    silent = SpendLedger(f"test.{unique}.nobody", timeout_s=0.3)
    silent.connection = nc
    with pytest.raises(DatabaseUnavailableError, match="the usage ledger is unreachable"):
        await KeyLimits(state, silent).admit(governed("m", f"key_{unique}", "r", key={"monthly_budget_usd": 5.0}), cs)


async def test_concurrent_requests_of_one_key_seed_once(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], unique: str
) -> None:
    _, fake = ledger
    key = f"key_{unique}"
    picks = await admit_all(limits, cs, [governed("m", key, f"r{i}", key={"daily_budget_usd": 5.0}) for i in range(20)])
    assert not [p for p in picks if isinstance(p, Exception)]
    assert len(fake.queries) == 1


async def test_overspend_is_bounded_by_what_a_request_costs_beyond_its_reservation(
    limits: KeyLimits, cs: list[Candidate], ledger: tuple[SpendLedger, FakeLedger], redis: Redis, unique: str
) -> None:
    """The documented bound, case 1: a prompt the estimate undercounted. Spend passes the budget by
    exactly that request's shortfall, and nothing more is admitted."""
    _, fake = ledger
    key = f"key_{unique}"
    budget = {"daily_budget_usd": 0.01}
    fake.spent[("key", key)] = 10_000_000 - 3_008_000  # room for exactly one reservation of $0.003008
    await limits.admit(governed("m", key, "r1", key=budget, estimated_tokens=1000, max_output_tokens=2), cs)
    with pytest.raises(KeyBudgetExceededError):
        await limits.admit(governed("m", key, "r2", key=budget, estimated_tokens=1000, max_output_tokens=2), cs)
    # Its prompt was really 1,500 tokens: 500 more than reserved at $0.003/1k = $0.0015 beyond it.
    real = max_cost_nano_usd(1500, 2, 0.003, 0.004)
    await limits.settle([settlement("r1", key, used_tokens=1502, cost_nano_usd=real)])
    day = await redis_now_ms(redis) // 86_400_000
    spent = int(await redis.get(f"{limits.subject_key('key', key)}:sd:{day}"))
    assert spent - 10_000_000 == real - 3_008_000 == 1_500_000
    with pytest.raises(KeyBudgetExceededError):
        await limits.admit(governed("m", key, "r3", key=budget, estimated_tokens=1, max_output_tokens=1), cs)
