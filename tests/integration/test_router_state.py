"""RouterState against the real Redis: rate-limit windows, health, and replicas sharing both.

Each test works under its own key prefix and its own deployment ids, so parallel runs never meet.
Time reasoning uses Redis's clock (the one the Lua scripts read), never the test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from common.config import HealthConfig, parse_config
from common.errors import NoHealthyTargetError, RateLimitError
from router.selection import Candidate, Catalog
from router.state import RouterState

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
HEALTH = HealthConfig(failure_threshold=3, cooldown_s=30)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis, unique: str) -> AsyncIterator[str]:
    key_prefix = f"mr:test:{unique}:"
    yield key_prefix
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def state(redis: Redis, prefix: str) -> RouterState:
    return RouterState(redis, HEALTH, key_prefix=prefix)


def candidates(unique: str, *deployments: dict[str, Any]) -> list[Candidate]:
    """Candidates for a one-model config; ``deployments`` give at least an ``id`` suffix."""
    config = {
        "providers": {"p": {"adapter": "fake"}},
        "deployments": [
            {**d, "id": f"{unique}-{d['id']}", "model": f"m-{unique}", "provider": "p"} for d in deployments
        ],
    }
    return Catalog.from_config(parse_config(yaml.safe_dump(config))).candidates(f"m-{unique}")


async def redis_now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def pick_ids(state: RouterState, cs: list[Candidate], times: int, tokens: int = 0) -> list[str]:
    picks = [await state.pick("m", cs, tokens) for _ in range(times)]
    return [cs[p.chosen].deployment_id.rsplit("-", 1)[1] for p in picks]


async def in_one_window(redis: Redis, window_ms: int, body: Callable[[int], Awaitable[None]]) -> tuple[int, int]:
    """Run ``body(attempt)`` until it starts and ends in the same window of Redis's clock (a window
    boundary falling inside it would change the arithmetic); returns (start, end) in ms."""
    for attempt in range(3):
        start = await redis_now_ms(redis)
        await body(attempt)
        end = await redis_now_ms(redis)
        if start // window_ms == end // window_ms:
            return start, end
    raise AssertionError("three attempts in a row straddled a window boundary")


async def test_rpm_limit_reached_moves_to_next_deployment(state: RouterState, unique: str) -> None:
    cs = candidates(unique, {"id": "a", "rpm": 2}, {"id": "b", "rpm": 2, "priority": 1})
    assert await pick_ids(state, cs, 4) == ["a", "a", "b", "b"]
    with pytest.raises(RateLimitError):
        await state.pick("m", cs, 0)


async def test_every_candidate_over_its_limit_gives_retry_after_of_the_earliest(
    state: RouterState, redis: Redis, unique: str
) -> None:
    errors: list[RateLimitError] = []

    async def exhaust(attempt: int) -> None:
        cs = candidates(f"{unique}{attempt}", {"id": "a", "rpm": 1}, {"id": "b", "rpm": 2})
        assert await pick_ids(state, cs, 3) == ["a", "b", "b"]
        with pytest.raises(RateLimitError) as info:
            await state.pick("m", cs, 0)
        errors.append(info.value)

    start, end = await in_one_window(redis, MINUTE_MS, exhaust)
    # Fresh counters, this window only. In the next window this window's count weighs
    # (1 - elapsed/W): "a" (1 of 1) frees a slot only after a whole window, "b" (2 of 2) halfway in.
    # Redis answers whole milliseconds; seconds * 1000 can land a hair under (65.329 -> 65328.99999...).
    retry_ms = round(errors[-1].retry_after_s * 1000)  # type: ignore[arg-type, operator]
    earliest_ms = MINUTE_MS + MINUTE_MS // 2
    assert earliest_ms - end % MINUTE_MS <= retry_ms <= earliest_ms - start % MINUTE_MS


async def test_previous_window_weighs_by_its_remaining_overlap(state: RouterState, redis: Redis, unique: str) -> None:
    """The window slides: the previous minute's requests count in proportion to how much of that
    minute the sliding window still covers (a fixed window would allow all 10 at once)."""
    granted: list[int] = []
    errors: list[RateLimitError] = []

    async def fill_previous_window_then_route(attempt: int) -> None:
        cs = candidates(f"{unique}{attempt}", {"id": "a", "rpm": 10})
        window = await redis_now_ms(redis) // MINUTE_MS
        previous_key = f"{state.deployment_key(cs[0].deployment_id)}:r:{window - 1}"
        await redis.set(previous_key, 10, px=3 * MINUTE_MS)
        for count in range(11):  # at most 10 can ever be granted
            try:
                await state.pick("m", cs, 0)
            except RateLimitError as exc:
                errors.append(exc)
                granted.append(count)
                return
        raise AssertionError("rpm 10 granted 11 requests")

    start, end = await in_one_window(redis, MINUTE_MS, fill_previous_window_then_route)
    # 10 * (W - elapsed) / W + granted <= 10  =>  granted = floor(10 * elapsed / W)
    assert 10 * (start % MINUTE_MS) // MINUTE_MS <= granted[-1] <= 10 * (end % MINUTE_MS) // MINUTE_MS
    # The next slot frees once the old share has decayed to 10 - (granted + 1).
    frees_at = MINUTE_MS * (granted[-1] + 1) / 10
    # Redis answers whole milliseconds; seconds * 1000 can land a hair under (65.329 -> 65328.99999...).
    retry_ms = round(errors[-1].retry_after_s * 1000)  # type: ignore[arg-type, operator]
    assert frees_at - end % MINUTE_MS - 1 <= retry_ms <= frees_at - start % MINUTE_MS + 1


async def test_window_slides_in_real_time(redis: Redis, prefix: str, unique: str) -> None:
    """With a 1 s window and rpm 3, the slots used in one window come back gradually in the next:
    the first one only once a third of it has passed."""
    window_ms = 1000
    state = RouterState(redis, HEALTH, key_prefix=prefix, window_s=window_ms / 1000)
    cs = candidates(unique, {"id": "a", "rpm": 3})

    start = await redis_now_ms(redis)
    if start % window_ms >= 500:  # begin early in a window so all three requests land in it
        await asyncio.sleep((window_ms - start % window_ms) / 1000)
        start = await redis_now_ms(redis)
    assert await pick_ids(state, cs, 3) == ["a", "a", "a"]
    assert (await redis_now_ms(redis)) // window_ms == start // window_ms
    with pytest.raises(RateLimitError):
        await state.pick("m", cs, 0)

    async def granted() -> int:
        while True:
            try:
                await state.pick("m", cs, 0)
                return await redis_now_ms(redis)
            except RateLimitError:
                await asyncio.sleep(0.01)

    granted_at = await asyncio.wait_for(granted(), timeout=5)
    assert granted_at // window_ms == start // window_ms + 1
    assert granted_at % window_ms >= window_ms / 3


async def test_tpm_counts_estimated_tokens(state: RouterState, redis: Redis, unique: str) -> None:
    cs = candidates(unique, {"id": "a", "tpm": 1000}, {"id": "b", "priority": 1})
    assert await pick_ids(state, cs, 1, tokens=600) == ["a"]
    assert await pick_ids(state, cs, 1, tokens=600) == ["b"]  # 1200 would exceed a's 1000
    assert await pick_ids(state, cs, 1, tokens=300) == ["a"]
    window = await redis_now_ms(redis) // MINUTE_MS
    counted = await redis.get(f"{state.deployment_key(cs[0].deployment_id)}:t:{window}")
    previous = await redis.get(f"{state.deployment_key(cs[0].deployment_id)}:t:{window - 1}")
    assert int(counted or 0) + int(previous or 0) == 900


async def report(state: RouterState, cs: list[Candidate], dep: str, status: int, retry_after_s: float = 0) -> bool:
    """A failure reported as the servicer reports it: with the model's other deployments."""
    siblings = [c.deployment_id for c in cs if c.deployment_id != dep]
    return await state.report_outcome(
        dep, success=False, status_code=status, retry_after_s=retry_after_s, siblings=siblings
    )


async def test_failures_up_to_threshold_eject_and_one_always_stays(state: RouterState, unique: str) -> None:
    cs = candidates(unique, {"id": "a"}, {"id": "b", "priority": 1})
    a, b = (c.deployment_id for c in cs)
    for _ in range(HEALTH.failure_threshold - 1):
        assert await report(state, cs, a, 500)
    pick = await state.pick("m", cs, 0)
    assert (cs[pick.chosen].deployment_id, pick.recent_failures) == (a, HEALTH.failure_threshold - 1)
    assert not await report(state, cs, a, 502)
    assert await pick_ids(state, cs, 1) == ["b"]
    # Half of two may be out at once: b, the last one standing, is never ejected.
    for _ in range(HEALTH.failure_threshold + 2):
        assert await report(state, cs, b, 0)
    pick = await state.pick("m", cs, 0)
    assert (cs[pick.chosen].deployment_id, pick.recent_failures) == (b, HEALTH.failure_threshold + 2)


async def test_ejection_lasts_base_time_times_ejections(state: RouterState, redis: Redis, unique: str) -> None:
    cs = candidates(unique, {"id": "a"}, {"id": "b", "priority": 1})
    a = cs[0].deployment_id
    for _ in range(HEALTH.failure_threshold):
        await report(state, cs, a, 503)
    now = await redis_now_ms(redis)
    until = int(await redis.get(f"{state.deployment_key(a)}:ej"))
    assert HEALTH.cooldown_s * 1000 - 2000 < until - now <= HEALTH.cooldown_s * 1000
    # Its probe (forced here by moving the ejection's end to now) fails: out for twice as long.
    await redis.set(f"{state.deployment_key(a)}:ej", str(now), keepttl=True)
    assert await pick_ids(state, cs, 1) == ["a"]
    assert not await report(state, cs, a, 500)
    now = await redis_now_ms(redis)
    until = int(await redis.get(f"{state.deployment_key(a)}:ej"))
    assert 2 * HEALTH.cooldown_s * 1000 - 2000 < until - now <= 2 * HEALTH.cooldown_s * 1000
    assert await redis.get(f"{state.deployment_key(a)}:nej") == b"2"


async def test_success_resets_consecutive_failures(state: RouterState, unique: str) -> None:
    cs = candidates(unique, {"id": "a"})
    a = cs[0].deployment_id
    for _ in range(HEALTH.failure_threshold - 1):
        await state.report_outcome(a, success=False, status_code=500, retry_after_s=0)
    assert await state.report_outcome(a, success=True, status_code=200, retry_after_s=0)
    assert (await state.pick("m", cs, 0)).recent_failures == 0
    # Counting starts again from zero: threshold - 1 more failures keep it healthy.
    for _ in range(HEALTH.failure_threshold - 1):
        assert await state.report_outcome(a, success=False, status_code=500, retry_after_s=0)


async def test_429_with_retry_after_cools_down_exactly_that_long(state: RouterState, redis: Redis, unique: str) -> None:
    cs = candidates(unique, {"id": "a"}, {"id": "b", "priority": 1})
    a, b = (c.deployment_id for c in cs)
    assert await state.report_outcome(a, success=False, status_code=429, retry_after_s=0)  # no header
    assert not await state.report_outcome(a, success=False, status_code=429, retry_after_s=7.5)
    ttl_ms = await redis.pttl(f"{state.deployment_key(a)}:cd")
    assert 5500 < ttl_ms <= 7500
    assert await pick_ids(state, cs, 1) == ["b"]
    # A shorter Retry-After later does not shorten the running cooldown.
    await state.report_outcome(b, success=False, status_code=429, retry_after_s=30)
    await state.report_outcome(b, success=False, status_code=429, retry_after_s=1)
    assert await redis.pttl(f"{state.deployment_key(b)}:cd") > 25_000


async def test_fallbacks_are_usable_candidates_without_taking_their_slots(
    state: RouterState, redis: Redis, unique: str
) -> None:
    cs = candidates(
        unique,
        {"id": "a", "rpm": 1},
        {"id": "b", "rpm": 1, "priority": 1},
        {"id": "c", "priority": 2},
        {"id": "d", "priority": 3},
    )
    await state.report_outcome(cs[2].deployment_id, success=False, status_code=429, retry_after_s=60)
    first = await state.pick("m", cs, 0)
    assert (first.chosen, first.fallbacks) == (0, (1, 3))
    assert [key async for key in redis.scan_iter(match=f"{state.deployment_key(cs[1].deployment_id)}:r:*")] == []
    second = await state.pick("m", cs, 0)
    assert (second.chosen, second.fallbacks) == (1, (3,))


async def test_rate_limited_beats_unhealthy(state: RouterState, unique: str) -> None:
    cs = candidates(unique, {"id": "a"}, {"id": "b", "rpm": 1, "priority": 1})
    await state.report_outcome(cs[0].deployment_id, success=False, status_code=429, retry_after_s=60)
    assert await pick_ids(state, cs, 1) == ["b"]
    with pytest.raises(RateLimitError) as info:
        await state.pick("m", cs, 0)
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0


async def test_no_candidates_left_is_unavailable(state: RouterState) -> None:
    with pytest.raises(NoHealthyTargetError):
        await state.pick("m", [], 0)


async def test_every_key_expires(state: RouterState, redis: Redis, prefix: str, unique: str) -> None:
    cs = candidates(unique, {"id": "a", "rpm": 5, "tpm": 100})
    await state.pick("m", cs, 10)
    await state.report_outcome(cs[0].deployment_id, success=False, status_code=500, retry_after_s=0)
    await state.report_outcome(cs[0].deployment_id, success=False, status_code=429, retry_after_s=3)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    assert len(keys) == 5  # requests, tokens, failures, cooldown, statistics
    for key in keys:
        assert await redis.pttl(key) > 0, key


async def test_two_replicas_share_limits_and_health(redis_url: str, prefix: str, unique: str) -> None:
    """Two states on two connections stand in for two router processes."""
    first_client, second_client = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = RouterState(first_client, HEALTH, key_prefix=prefix)
        second = RouterState(second_client, HEALTH, key_prefix=prefix)
        limited = candidates(unique, {"id": "a", "rpm": 2})
        assert await pick_ids(first, limited, 1) == ["a"]
        assert await pick_ids(second, limited, 1) == ["a"]
        with pytest.raises(RateLimitError):
            await first.pick("m", limited, 0)

        cs = candidates(f"{unique}h", {"id": "x"}, {"id": "y", "priority": 1})
        for _ in range(HEALTH.failure_threshold):
            await report(first, cs, cs[0].deployment_id, 500)
        assert await pick_ids(second, cs, 1) == ["y"]
    finally:
        await first_client.aclose()
        await second_client.aclose()
