"""ModelRouter for the benchmark: its config pointing the ``openai`` adapter at the mock upstream,
a migrated database, and the four services started with ``scripts.stack.Stack`` — accounting,
auth and tracing on, as in production (spans made, exported nowhere)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.targets import MODELROUTER, MODELROUTER_GOVERNED, Target
from scripts.stack import ROOT, Ports, Stack, source_path

MODEL = "bench"
UPSTREAM_MODEL = "bench-upstream"
KEY = "sk-modelrouter-bench-0123456789"
MASTER_KEY = "sk-modelrouter-bench-master-0123456789"
# Limits the bench never reaches, so every one is checked on every request and none refuses.
GOVERNED_LIMITS = {
    "rpm": 100_000_000,
    "tpm": 4_000_000_000,
    "max_parallel": 100_000,
    "daily_budget_usd": 1_000_000,
    "monthly_budget_usd": 10_000_000,
    "models": [MODEL],
}

CONFIG = """\
providers:
  mock:
    adapter: openai
    base_url: http://127.0.0.1:{mock_port}/v1
    api_key_env: BENCH_UPSTREAM_KEY
deployments:
  - id: bench-{suffix}
    model: {model}
    provider: mock
    upstream_model: {upstream_model}
    rpm: 100000000
    price: {{prompt_per_1k: 0.00015, completion_per_1k: 0.0006}}
keys:
  - {{key: {key}, id: bench}}
"""


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _recreate(database_url: str) -> None:
    server, _, name = database_url.rpartition("/")
    conn = await asyncpg.connect(_plain(f"{server}/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def prepare_database(database_url: str, recreate: bool, root: Path = ROOT) -> None:
    """Migrate ``database_url`` with ``root``'s migrations (first dropping and creating it when
    ``recreate``: the bench's own database starts empty each run, so runs are comparable)."""
    if recreate:
        asyncio.run(_recreate(database_url))
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=root / "services" / "accounting",
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": source_path(root)},
        check=True,
        capture_output=True,
    )


def start_modelrouter(
    workdir: Path,
    mock_port: int,
    ports: Ports,
    redis_url: str,
    nats_url: str,
    database_url: str,
    *,
    root: Path = ROOT,
    name: str = MODELROUTER,
) -> tuple[Stack, Target]:
    """The four services from the source at ``root`` (this checkout's, or a baseline's), as target
    ``name``."""
    config = workdir / "modelrouter.yaml"
    config.write_text(
        CONFIG.format(
            mock_port=mock_port,
            suffix=uuid.uuid4().hex[:8],
            model=MODEL,
            upstream_model=UPSTREAM_MODEL,
            key=KEY,
        )
    )
    stack = Stack(
        ports=ports,
        root=root,
        log_dir=workdir / f"{name}-logs",
        env={
            "MODELROUTER_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "API_KEYS": "",
            "MODELROUTER_MASTER_KEY": MASTER_KEY,
            "BENCH_UPSTREAM_KEY": "sk-mock-upstream",
            # Tracing stays on (spans are made and propagated) but exports to no endpoint.
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
        },
    )
    try:
        stack.start(timeout=60)
    except BaseException:
        stack.stop()
        raise
    pids = {service: proc.pid for service, proc in stack.procs.items()}
    return stack, Target(name, ports.gateway, MODEL, KEY, pids)


def governed_target(modelrouter: Target) -> Target:
    """The same stack on a governed key, made with the admin API."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{modelrouter.port}/admin/keys",
        data=orjson.dumps({"name": "bench-governed", **GOVERNED_LIMITS}),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        secret = orjson.loads(answer.read())["key"]
    return Target(MODELROUTER_GOVERNED, modelrouter.port, MODEL, secret, modelrouter.pids)
