"""What a Route's Redis step costs, ungoverned and with an Admission (a key's rpm, tpm, max_parallel
and daily budget), at concurrency 1: the client's p50 per call and Redis's own time per script.

    python -m bench.route_admission [--calls N]   # REDIS_URL (default: the local one); a private
                                                   # redis-server keeps Redis's numbers clean

Each governed call is settled before the next (the reservation's full life): once by a Settle of its
own, timed apart, and once folded into the next call's admission, as a gateway's next Route carries it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import yaml
from redis.asyncio import Redis

from common.config import HealthConfig, parse_config
from modelrouter.keys.v1 import keys_pb2
from modelrouter.router.v1 import router_pb2
from router.limits.admission import KeyLimits
from router.selection import Catalog
from router.state import RouterState


async def p50_us(call: Callable[[int], Awaitable[object]], calls: int) -> float:
    for i in range(calls // 10):
        await call(-i - 1)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def evalsha_us(redis: Redis) -> tuple[int, float]:
    stats = await redis.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(entry["calls"]), float(entry["usec"])


async def main(calls: int) -> None:
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    tag = uuid.uuid4().hex[:8]
    config = {
        "providers": {"p": {"adapter": "fake"}},
        "deployments": [
            {"id": f"{tag}-a", "model": "m", "provider": "p", "price": {"prompt_per_1k": 0.001}},
            {"id": f"{tag}-b", "model": "m", "provider": "p", "priority": 1},
        ],
    }
    candidates = Catalog.from_config(parse_config(yaml.safe_dump(config))).candidates("m")
    state = RouterState(redis, HealthConfig(failure_threshold=3, cooldown_s=30), key_prefix=f"mr:bench:{tag}:")
    limits = KeyLimits(state)
    await state.load_scripts()
    await limits.load_scripts()
    key_limits = keys_pb2.Limits(rpm=4_000_000_000, tpm=4_000_000_000, max_parallel=1000, daily_budget_usd=10**6)
    await redis.set(f"mr:bench:{tag}:key:k:sd:{int(time.time()) // 86400}", 0, ex=86400)  # seeded

    def governed(i: int) -> router_pb2.RouteRequest:
        admission = router_pb2.Admission(request_id=str(i), key_limits=key_limits, max_output_tokens=100, first=True)
        return router_pb2.RouteRequest(model="m", key_id="k", estimated_tokens=100, admission=admission)

    async def ungoverned(i: int) -> object:
        return await state.pick("m", candidates, 100)

    async def admit_then_settle(i: int) -> tuple[float, float]:
        started = time.perf_counter()
        await limits.admit(governed(i), candidates)
        admitted = time.perf_counter()
        await limits.settle([router_pb2.Settlement(request_id=str(i), key_id="k", used_tokens=150)])
        return admitted - started, time.perf_counter() - admitted

    try:
        before = await evalsha_us(redis)
        client = await p50_us(ungoverned, calls)
        after = await evalsha_us(redis)
        server = (after[1] - before[1]) / max(1, after[0] - before[0])
        print(f"{'route, ungoverned':20s} client p50 {client:7.1f} us   redis {server:6.1f} us/script")
        for i in range(calls // 10):
            await admit_then_settle(-i - 1)
        before = await evalsha_us(redis)
        times = [await admit_then_settle(i) for i in range(calls)]
        after = await evalsha_us(redis)
        server = (after[1] - before[1]) / max(1, after[0] - before[0])
        for name, column in (("route, governed", 0), ("settle", 1)):
            client = statistics.median(t[column] for t in times) * 1e6
            print(f"{name:20s} client p50 {client:7.1f} us")
        print(f"{'(admit + settle)':20s} redis {server:6.1f} us/script on average")

        async def admit_folding_the_last(i: int) -> object:
            done = [router_pb2.Settlement(request_id=f"f{i - 1}", key_id="k", used_tokens=150)]
            request = governed(i)
            request.admission.request_id = f"f{i}"
            return await limits.admit(request, candidates, settlements=done)

        before = await evalsha_us(redis)
        client = await p50_us(admit_folding_the_last, calls)
        after = await evalsha_us(redis)
        server = (after[1] - before[1]) / max(1, after[0] - before[0])
        print(f"{'route, gov. + folded':20s} client p50 {client:7.1f} us   redis {server:6.1f} us/script")
    finally:
        keys = [k async for k in redis.scan_iter(match=f"mr:bench:{tag}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    asyncio.run(main(parser.parse_args().calls))
