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
each as the consumer does, into a fresh database at revision 0003 (the plain table, the old
statement) and at head (partitioned, rollup upsert in the same transaction, one event in ten with
texts); events per second, best of ``--rounds``.

Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from accounting.analytics import queries
from accounting.analytics.partitions import ensure_months
from accounting.models import UsageRecord
from accounting.store import UsageStore, async_database_url
from common.analytics import RequestQuery, RequestsQuery, Scope, UsageQuery

ROOT = Path(__file__).resolve().parents[1]
DB = "modelrouter_bench_analytics"
KEYS, TEAMS, DAYS = 1000, 50, 90
MODELS = [
    ("gpt-4o-mini", "openai", 0.00015, 0.0006),
    ("gpt-4o", "openai", 0.0025, 0.01),
    ("claude-sonnet-4-5", "anthropic", 0.003, 0.015),
    ("claude-haiku", "anthropic", 0.0008, 0.004),
    ("gemini-2.5-flash", "gemini", 0.0003, 0.0025),
    ("gemini-2.5-pro", "gemini", 0.00125, 0.01),
    ("mistral-small", "mistral", 0.0001, 0.0003),
    ("mistral-large", "mistral", 0.002, 0.006),
]
STATUSES = ["success", "error", "cancelled"]
VOCABULARY = 2000
WORDS_PER_PROMPT = 12


def key_id(n: int) -> str:
    return f"key_{n:016x}"


def team_id(n: int) -> str | None:
    return None if n % 10 == 9 else f"team_{n % TEAMS:016x}"


def word(n: int) -> str:
    # A word of 4-9 random lowercase letters, the same for the same n: text whose trigrams are spread
    # as a real vocabulary's are (words built from a few syllables would share most of theirs).
    rng = random.Random(n)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=4 + n % 6))


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def scratch_url(base: str, name: str) -> str:
    return f"{base.rpartition('/')[0]}/{name}"


async def recreate(base: str, name: str) -> str:
    conn = await asyncpg.connect(dsn(base))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return scratch_url(base, name)


def migrate(url: str, revision: str = "head") -> None:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs", "libs/protos", "services")),
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", revision],
        cwd=ROOT / "services" / "accounting",
        env=env,
        check=True,
        capture_output=True,
    )


# --- the load -------------------------------------------------------------------------------------


def _numbers(n: int, first: int, seed: int, now_ms: int) -> list[tuple[Any, ...]]:
    """``n`` rows of numbers: (seq, key, model, started ms, status, prompt, completion, latency, body)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, KEYS, n)
    # Each key uses 2-3 of the models: its own first model and the next one or two.
    model = (keys * 3 + rng.integers(0, 2 + (keys % 2), n)) % len(MODELS)
    started = now_ms - rng.integers(0, DAYS * 86_400_000, n)
    status = rng.choice(3, n, p=[0.95, 0.04, 0.01])
    prompt = rng.integers(5, 4000, n)
    completion = np.where(status == 1, 0, rng.integers(1, 1500, n))
    latency = rng.gamma(2.0, 400.0, n)
    body = rng.random(n) < 0.1
    return list(
        zip(
            range(first, first + n),
            keys.tolist(),
            model.tolist(),
            started.tolist(),
            status.tolist(),
            prompt.tolist(),
            completion.tolist(),
            latency.tolist(),
            body.tolist(),
            strict=True,
        )
    )


_STAGE = """
CREATE UNLOGGED TABLE IF NOT EXISTS bench_stage (
  seq bigint, k int, m int, started_ms bigint, s int, p int, c int, latency float8, body bool)
"""
_EXPAND = """
INSERT INTO usage_records (request_id, key_id, team_id, endpoint, requested_model, provider, upstream_model,
  deployment_id, status, http_status, error_type, error_message, prompt_tokens, completion_tokens, total_tokens,
  cached_tokens, cost_usd, stream, attempts, latency_ms, ttft_ms, started_at, finished_at)
SELECT 'chatcmpl-' || lpad(to_hex(seq), 16, '0'), 'key_' || lpad(to_hex(k), 16, '0'),
  CASE WHEN k % 10 = 9 THEN NULL ELSE 'team_' || lpad(to_hex(k % {teams}), 16, '0') END,
  '/v1/chat/completions', (ARRAY{models})[m + 1], (ARRAY{providers})[m + 1], (ARRAY{models})[m + 1],
  (ARRAY{models})[m + 1] || '-primary', (ARRAY['success','error','cancelled'])[s + 1],
  (ARRAY[200, 502, 499])[s + 1], CASE WHEN s = 1 THEN 'api_error' END, CASE WHEN s = 1 THEN 'upstream 502' END,
  p, c, p + c, 0, round((p * (ARRAY{pin})[m + 1] + c * (ARRAY{pout})[m + 1]) / 1000.0, 12), m % 2 = 0, 1, latency,
  CASE WHEN m % 2 = 0 THEN latency / 4 END, to_timestamp(started_ms / 1000.0),
  to_timestamp((started_ms + latency) / 1000.0)
FROM bench_stage
"""


async def load(url: str, rows: int, chunk: int = 500_000) -> dict[str, float]:
    timings: dict[str, float] = {}
    now_ms = int(time.time() * 1000)
    words = [word(i) for i in range(VOCABULARY)]
    conn = await asyncpg.connect(dsn(url))
    try:
        await conn.execute(_STAGE)
        # Indexes are built once after the load (a sorted build), not row by row during it.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('usage_records', 'usage_bodies')"
            " AND indexname LIKE 'ix_%'"
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['indexname']}")
        names = "ARRAY[" + ",".join(f"'{m[0]}'" for m in MODELS) + "]"
        expand = _EXPAND.format(
            teams=TEAMS,
            models=names[5:],
            providers="[" + ",".join(f"'{m[1]}'" for m in MODELS) + "]",
            pin="[" + ",".join(f"{m[2]}::numeric" for m in MODELS) + "]",
            pout="[" + ",".join(f"{m[3]}::numeric" for m in MODELS) + "]",
        )
        copy_s = expand_s = bodies_s = 0.0
        rng = random.Random(7)
        for part, start in enumerate(range(0, rows, chunk)):
            numbers = _numbers(min(chunk, rows - start), start, part, now_ms)
            t0 = time.perf_counter()
            await conn.execute("TRUNCATE bench_stage")
            await conn.copy_records_to_table("bench_stage", records=numbers)
            t1 = time.perf_counter()
            await conn.execute(expand)
            t2 = time.perf_counter()
            texts = [
                (
                    f"chatcmpl-{seq:016x}",
                    datetime.fromtimestamp(ms / 1000, UTC),
                    key_id(k),
                    team_id(k),
                    " ".join(rng.choices(words, k=WORDS_PER_PROMPT)),
                    "ok",
                    False,
                    False,
                )
                for seq, k, _, ms, _, _, _, _, body in numbers
                if body
            ]
            await conn.copy_records_to_table(
                "usage_bodies",
                records=texts,
                columns=[
                    "request_id",
                    "started_at",
                    "key_id",
                    "team_id",
                    "prompt_text",
                    "response_text",
                    "prompt_truncated",
                    "response_truncated",
                ],
            )
            t3 = time.perf_counter()
            copy_s, expand_s, bodies_s = copy_s + t1 - t0, expand_s + t2 - t1, bodies_s + t3 - t2
            print(f"  loaded {start + len(numbers):,} rows", flush=True)
        timings.update(copy_s=copy_s, expand_s=expand_s, bodies_s=bodies_s)
        t0 = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for index in indexes:
            # pg_indexes shows a partitioned index as "ON ONLY <parent>", which alone would build none
            # of the partitions' indexes.
            await conn.execute(index["indexdef"].replace(" ON ONLY ", " ON "))
        timings["indexes_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for table, keys, grouped in (
            ("usage_daily", "key_id, coalesce(team_id, ''),", "1, 2, 3, 4, 5"),
            ("usage_daily_totals", "", "1, 2, 3"),
        ):
            await conn.execute(
                f"INSERT INTO {table} SELECT (started_at AT TIME ZONE 'UTC')::date, {keys}"
                " requested_model, coalesce(provider, ''), count(*), count(*) FILTER (WHERE status = 'success'),"
                " count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE status = 'cancelled'),"
                " sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd), sum(latency_ms)"
                f" FROM usage_records GROUP BY {grouped}"
            )
        timings["rollup_s"] = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_stage")
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["analyze_s"] = time.perf_counter() - t0
    finally:
        await conn.close()
    return timings


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


# --- accounting's insert rate ----------------------------------------------------------------------


def _events(n: int, offset: int, texts: float) -> list[dict[str, Any]]:
    rng = random.Random(offset)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        m = MODELS[rng.randrange(8)]
        p, c = rng.randrange(5, 4000), rng.randrange(1, 1500)
        row: dict[str, Any] = {
            "request_id": f"chatcmpl-ins-{offset + i:012d}",
            "key_id": key_id(rng.randrange(KEYS)),
            "team_id": team_id(rng.randrange(KEYS)),
            "endpoint": "/v1/chat/completions",
            "requested_model": m[0],
            "provider": m[1],
            "upstream_model": m[0],
            "deployment_id": f"{m[0]}-primary",
            "status": "success",
            "http_status": 200,
            "error_type": None,
            "error_message": None,
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "cached_tokens": 0,
            "cost_usd": Decimal(str(round((p * m[2] + c * m[3]) / 1000, 12))),
            "stream": False,
            "attempts": 1,
            "latency_ms": rng.uniform(100, 2000),
            "ttft_ms": None,
            "started_at": now,
            "finished_at": now,
        }
        texts_of = {
            "prompt_text": f"hello {rng.random()} " * 8,  # texts differ, as real ones do, for the trigram index
            "response_text": "hi " * 40,
            "prompt_truncated": False,
            "response_truncated": False,
        }
        row["bodies"] = texts_of if texts and i % round(1 / texts) == 0 else None
        rows.append(row)
    return rows


async def _old_insert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """What accounting's store did before the analytics schema (0003): one INSERT … ON CONFLICT
    (request_id) DO NOTHING per batch, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(insert(UsageRecord).on_conflict_do_nothing(index_elements=["request_id"]), rows)


VARIANTS = (
    # (label, revision, share of events with texts)
    ("0003: one table, no rollup (before)", "0003", 0.0),
    ("head: partitioned + rollups, no texts", "head", 0.0),
    ("head: partitioned + rollups, 1 in 10 with texts", "head", 0.1),
)


async def insert_rate(base: str, batches: int, rounds: int) -> dict[str, float]:
    """Best events/s of each variant; the variants alternate within each round, so a neighbour's
    load on this shared machine falls on all of them alike."""
    best = {label: 0.0 for label, _, _ in VARIANTS}
    for _ in range(rounds):
        for label, revision, texts in VARIANTS:
            url = await recreate(base, f"{DB}_insert")
            migrate(url, revision)
            engine = create_async_engine(async_database_url(url), pool_size=2)
            store = UsageStore(engine)
            batches_rows = [_events(64, b * 64, texts) for b in range(batches)]
            try:
                t0 = time.perf_counter()
                for rows in batches_rows:
                    if revision == "head":
                        await store.insert(rows)
                    else:
                        await _old_insert(engine, [{k: v for k, v in r.items() if k != "bodies"} for r in rows])
                rate = batches * 64 / (time.perf_counter() - t0)
            finally:
                await engine.dispose()
            best[label] = max(best[label], rate)
            print(f"  insert {label}: {rate:,.0f} events/s", flush=True)
    return best


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
        best = await insert_rate(base, args.batches, args.rounds)
        before = best[VARIANTS[0][0]]
        print(
            f"\n| accounting's insert ({args.batches} batches of 64) | events/s (best of {args.rounds}) | vs before |"
        )
        print("|---|---|---|")
        for label, rate in best.items():
            print(f"| {label} | {rate:,.0f} | {100 * (rate - before) / before:+.1f}% |")
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
