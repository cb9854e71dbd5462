"""``python -m bench.analytics``: the analytics API's queries at scale, and accounting's insert rate
with and without the analytics schema.

Load: a scratch database (``modelrouter_bench_analytics``, recreated) migrated to head; ``--rows``
generated usage rows (default 10 million) over the last 90 days for 1,000 keys in 50 teams (every
tenth key without one), each key using 2-3 of 8 models of 4 providers, 95% success, 4% error, 1%
cancelled, one row in ten with a stored prompt (12 words of a 2,000-word vocabulary). The numbers go
in by COPY (binary, into an unlogged staging table) and are expanded into ``usage_records`` and
``usage_bodies`` by one INSERT … SELECT each; ``usage_daily`` and ``usage_daily_totals`` are then built by the GROUP BY
the consumer keeps them equal to.

Timed: each endpoint's query through accounting's own query code (``accounting.analytics.queries``,
the functions the NATS responder calls, on an asyncpg engine), ``--repeat`` times with a random key
(or team) each time, after one warm-up round; p50 and p95 in ms. Not timed: the NATS hop and the
gateway (a fraction of a millisecond each; see ``bench.hops``).

``--insert-rate``: accounting's store inserting ``--batches`` batches of 64 events, one transaction
each as the consumer does, into a fresh database at revision 0004 (the plain table, the old
statement) and at head (partitioned, rollup upsert in the same statement, with no texts and with one
event in ten carrying texts); events per second, best of ``--rounds``, and the Postgres backend's CPU
per batch (median round; read from /proc, so only when Postgres runs on this machine): the rate is
the client's and the server's time together, this is the server's share alone.

Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from accounting.analytics import queries
from accounting.analytics.partitions import ensure_months
from accounting.store import async_database_url
from bench.analytics_data import (
    DAYS,
    DB,
    KEYS,
    MODELS,
    TEAMS,
    VOCABULARY,
    key_id,
    load,
    migrate,
    recreate,
    scratch_url,
    word,
)
from bench.analytics_insert import VARIANTS, insert_rate
from common.analytics import RequestQuery, RequestsQuery, Scope, UsageQuery

# --- the queries ------------------------------------------------------------------------------------

Timed = Callable[[AsyncConnection, random.Random], Awaitable[Any]]


def _key(rng: random.Random) -> str:
    return key_id(rng.randrange(KEYS))


def _team(rng: random.Random) -> str:
    return f"team_{rng.randrange(TEAMS):016x}"


def _cases(sample_ids: list[str]) -> list[tuple[str, float, Timed]]:
    """(what, target p95 ms, the query)."""
    now = datetime.now(UTC)
    week = (now - timedelta(days=7), now)
    words = [word(i) for i in range(VOCABULARY)]
    return [
        ("usage?days=30, one key", 50, lambda c, r: queries.usage(c, Scope(key_id=_key(r)), UsageQuery(days=30))),
        (
            "usage?days=30, one team (master)",
            200,
            lambda c, r: queries.usage(c, Scope(team_id=_team(r)), UsageQuery(days=30)),
        ),
        ("usage?days=30, everything (master)", 200, lambda c, r: queries.usage(c, Scope(), UsageQuery(days=30))),
        ("usage?days=365, everything (master)", 200, lambda c, r: queries.usage(c, Scope(), UsageQuery(days=365))),
        ("requests, one key, page 1", 50, lambda c, r: queries.requests(c, Scope(key_id=_key(r)), RequestsQuery())),
        (
            "requests, one key, model+status+7 days",
            50,
            lambda c, r: queries.requests(
                c,
                Scope(key_id=_key(r)),
                RequestsQuery(model=MODELS[r.randrange(8)][0], status="success", start_date=week[0], end_date=week[1]),
            ),
        ),
        (
            "requests, one key, page 20",
            50,
            lambda c, r: queries.requests(c, Scope(key_id=_key(r)), RequestsQuery(page=20)),
        ),
        ("requests, everything, page 1 (master)", 50, lambda c, r: queries.requests(c, Scope(), RequestsQuery())),
        (
            "requests, everything, model+status (master)",
            50,
            lambda c, r: queries.requests(c, Scope(), RequestsQuery(model=MODELS[r.randrange(8)][0], status="error")),
        ),
        (
            "requests, everything, model+7 days (master)",
            50,
            lambda c, r: queries.requests(
                c, Scope(), RequestsQuery(model=MODELS[r.randrange(8)][0], start_date=week[0], end_date=week[1])
            ),
        ),
        (
            "search, one key",
            300,
            lambda c, r: queries.requests(c, Scope(key_id=_key(r)), RequestsQuery(search=r.choice(words))),
        ),
        (
            "search, everything (master)",
            300,
            lambda c, r: queries.requests(c, Scope(), RequestsQuery(search=r.choice(words))),
        ),
        (
            "search + model, everything (master)",
            300,
            lambda c, r: queries.requests(
                c, Scope(), RequestsQuery(search=r.choice(words), model=MODELS[r.randrange(8)][0])
            ),
        ),
        ("request detail", 50, lambda c, r: queries.request(c, Scope(), RequestQuery(id=r.choice(sample_ids)))),
        ("user/stats, one key", 50, lambda c, r: queries.user_stats(c, Scope(key_id=_key(r), team_id=_team(r)))),
    ]


async def time_queries(url: str, repeat: int) -> list[tuple[str, float, float, float]]:
    engine = create_async_engine(async_database_url(url), pool_size=1)
    try:
        async with engine.connect() as conn:
            loaded = int((await conn.exec_driver_sql("SELECT sum(requests) FROM usage_daily_totals")).scalar() or 1)
        # The load names its i-th row chatcmpl-<i in hex>.
        ids = [f"chatcmpl-{random.Random(i).randrange(loaded):016x}" for i in range(200)]
        results = []
        for name, target, case in _cases(ids):
            rng = random.Random(name)
            samples = []
            async with engine.connect() as conn:
                await case(conn, rng)  # warm-up: plans and pages cached as a running service's would be
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    await case(conn, rng)
                    samples.append((time.perf_counter() - t0) * 1000)
                await conn.rollback()
            samples.sort()
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            results.append((name, statistics.median(samples), p95, target))
            print(
                f"  {name:48s} p50 {statistics.median(samples):8.1f} ms  p95 {p95:8.1f} ms  (target {target} ms)",
                flush=True,
            )
        return results
    finally:
        await engine.dispose()


# --- main -------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--skip-load", action="store_true", help="time the queries on the database already loaded")
    parser.add_argument("--insert-rate", action="store_true", help="measure accounting's insert rate instead")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    if args.insert_rate:
        rates = await insert_rate(base, args.batches, args.rounds)
        before = rates[VARIANTS[0][0]]
        print(
            f"\n| accounting's insert ({args.batches} batches of 64) | events/s (best of {args.rounds}) | vs before"
            " | Postgres CPU per batch (median) |"
        )
        print("|---|---|---|---|")
        for label, rate in rates.items():
            cpu = f"{rate.postgres_ms:.2f} ms" if rate.postgres_ms is not None else "n/a (server not local)"
            print(f"| {label} | {rate.best:,.0f} | {100 * (rate.best - before.best) / before.best:+.1f}% | {cpu} |")
        return
    url = scratch_url(base, DB)
    if not args.skip_load:
        url = await recreate(base, DB)
        migrate(url)
        # The months of the last 90 days, as a service running that long would have made them.
        engine = create_async_engine(async_database_url(url))
        try:
            await ensure_months(engine, datetime.now(UTC) - timedelta(days=DAYS), ahead=4)
        finally:
            await engine.dispose()
        print(f"loading {args.rows:,} rows into {DB} ...", flush=True)
        t0 = time.perf_counter()
        timings = await load(url, args.rows)
        print(f"  loaded in {time.perf_counter() - t0:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in timings.items())})")
    print(f"timing each query {args.repeat} times:", flush=True)
    results = await time_queries(url, args.repeat)
    print(
        f"\n| query ({args.rows:,} rows, {KEYS:,} keys, {DAYS} days) | p50 ms | p95 ms | target p95 |"
        "\n|---|---|---|---|"
    )
    for name, p50, p95, target in results:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {'≤' if p95 <= target else '>'} {target} |")


if __name__ == "__main__":
    asyncio.run(main())
