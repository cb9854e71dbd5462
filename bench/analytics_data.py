"""The analytics benchmark's data (``python -m bench.analytics``): the scratch databases, and the
generated usage rows loaded by COPY. See ``bench.analytics`` for what is generated and timed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np

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
