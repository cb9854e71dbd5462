"""Accounting's insert rate before and after the analytics schema (``python -m bench.analytics
--insert-rate``): accounting's store writing batches of 64 events, one transaction each."""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from accounting.models import UsageRecord
from accounting.store import UsageStore, async_database_url
from bench.analytics_data import DB, KEYS, MODELS, key_id, migrate, recreate, team_id


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
            "input_cost_usd": Decimal(str(round(p * m[2] / 1000, 12))),
            "output_cost_usd": Decimal(str(round(c * m[3] / 1000, 12))),
            "price_unknown": False,
            "stream": False,
            "attempts": 1,
            "latency_ms": rng.uniform(100, 2000),
            "ttft_ms": None,
            "started_at": now,
            "finished_at": now,
        }
        row["cost_usd"] = row["input_cost_usd"] + row["output_cost_usd"]  # as the ledger's rows add up
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
    """What accounting's store did before the analytics schema (0004): one INSERT … ON CONFLICT
    (request_id) DO NOTHING per batch, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(insert(UsageRecord).on_conflict_do_nothing(index_elements=["request_id"]), rows)


VARIANTS = (
    # (label, revision, share of events with texts)
    ("0004: one table, no rollup (before)", "0004", 0.0),
    ("head: partitioned + rollups, no texts", "head", 0.0),
    ("head: partitioned + rollups, 1 in 10 with texts", "head", 0.1),
)


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of Postgres backend ``pid`` when it runs on this machine, else None."""
    try:
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


@dataclass
class Rate:
    best: float  # events/s, the best round
    # Postgres's CPU per batch (its backend's, read from /proc: None when the server is not local),
    # the median round: what the database does per batch, apart from the client's share of the time.
    postgres_ms: float | None


async def insert_rate(base: str, batches: int, rounds: int) -> dict[str, Rate]:
    """Best events/s of each variant; the variants alternate within each round, so a neighbour's
    load on this shared machine falls on all of them alike."""
    best = {label: 0.0 for label, _, _ in VARIANTS}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    for _ in range(rounds):
        for label, revision, texts in VARIANTS:
            url = await recreate(base, f"{DB}_insert")
            migrate(url, revision)
            engine = create_async_engine(async_database_url(url), pool_size=2)
            store = UsageStore(engine)
            batches_rows = [_events(64, b * 64, texts) for b in range(batches)]
            try:
                # One batch at a time: the pool hands out the connection opened here every time.
                pid = await _backend_pid(engine)
                cpu0 = _cpu_s(pid)
                t0 = time.perf_counter()
                for rows in batches_rows:
                    if revision == "head":
                        await store.insert(rows)
                    else:
                        await _old_insert(engine, [{k: v for k, v in r.items() if k != "bodies"} for r in rows])
                rate = batches * 64 / (time.perf_counter() - t0)
                cpu1 = _cpu_s(pid)
                if cpu0 is not None and cpu1 is not None and await _backend_pid(engine) == pid:
                    cpu[label].append((cpu1 - cpu0) * 1000 / batches)
            finally:
                await engine.dispose()
            best[label] = max(best[label], rate)
            print(f"  insert {label}: {rate:,.0f} events/s", flush=True)
    return {
        label: Rate(best[label], statistics.median(cpu[label]) if len(cpu[label]) == rounds else None) for label in best
    }
