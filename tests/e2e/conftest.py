"""The four services as real processes against the real Redis, NATS and Postgres, traced into an
in-test OTLP receiver, with a config of their own (unique deployment ids per session)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import openai
import pytest

from scripts.stack import ROOT, Ports, Stack
from tests.contract.server import UpstreamServer
from tests.contract.upstreams import wire_of
from tests.e2e.otlp import OtlpReceiver

KEY = "sk-e2e-test-key-0123456789"
# The key the workers send to the fake OpenAI-format upstream (provider "oai_upstream").
UPSTREAM_KEY = "sk-e2e-upstream-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT / "services" / "accounting",
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )


CONFIG = """
providers:
  fake: {{adapter: fake}}
  broken: {{adapter: fake, options: {{fail_status: "500"}}}}
  slow: {{adapter: fake, timeout_s: 1, options: {{hang: "true"}}}}
  dying: {{adapter: fake, options: {{fail_after_chunks: "3", tokens_per_second: "50"}}}}
  dripping: {{adapter: fake, options: {{tokens_per_second: "5"}}}}
  tools: {{adapter: fake, options: {{tool_call: "true"}}}}
  oai_upstream: {{adapter: openai, base_url: "{openai_base_url}", api_key_env: E2E_OPENAI_UPSTREAM_KEY,
                 price_list: openai}}
deployments:
  - {{id: demo-{u}, model: demo, provider: fake, upstream_model: fake-1,
      price: {{prompt_per_1k: 0.5, completion_per_1k: 1.5}}}}
  - {{id: broken-{u}, model: failover, provider: broken, priority: 0}}
  - {{id: good-{u}, model: failover, provider: fake, priority: 1}}
  - {{id: limited-{u}, model: limited, provider: fake, rpm: 1}}
  - {{id: slow-{u}, model: slow, provider: slow}}
  - {{id: dying-{u}, model: dying, provider: dying}}
  - {{id: dripping-{u}, model: dripping, provider: dripping}}
  - {{id: embed-{u}, model: embed, provider: fake, upstream_model: fake-embed-1,
      price: {{prompt_per_1k: 0.02}}}}
  - {{id: image-{u}, model: image, provider: fake, upstream_model: fake-image-1,
      price: {{prompt_per_1k: 0.005, completion_per_1k: 0.04}}}}
  - {{id: tools-{u}, model: tools, provider: tools, upstream_model: fake-tools-1}}
  - {{id: oai-{u}, model: oai, provider: oai_upstream, upstream_model: gpt-4o-mini}}
  - {{id: unpriced-{u}, model: unpriced, provider: fake, upstream_model: fake-unpriced-1}}
keys:
  - {{key: {key}, id: e2e-team}}
health:
  failure_threshold: 1000
  cooldown_s: 1
"""


async def _delete_stream(nats_url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


@dataclass
class RunningStack:
    stack: Stack
    base_url: str
    database_url: str
    otlp: OtlpReceiver
    suffix: str

    def client(self, key: str = KEY, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=f"{self.base_url}/v1", max_retries=0, **kwargs)  # type: ignore[arg-type]

    def deployment(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    async def usage_rows(self, request_id: str) -> list[asyncpg.Record]:
        return await self.fetch("SELECT * FROM usage_records WHERE request_id = $1", request_id)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Rows of ``query`` from the stack's database, on a connection of its own."""
        conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def openai_upstream() -> Iterator[UpstreamServer]:
    """A local server speaking OpenAI's wire format (the contract suite's fake upstream, answering every
    endpoint with the story's fixtures), behind the ``oai`` model: the real ``openai`` adapter end to end."""
    with UpstreamServer(wire_of("openai")) as server:
        yield server


@pytest.fixture(scope="session")
def running_stack(
    redis_url: str,
    nats_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    openai_upstream: UpstreamServer,
) -> Iterator[RunningStack]:
    migrate(database_url)
    workdir = tmp_path_factory.mktemp("stack")
    suffix = uuid.uuid4().hex[:8]
    config = workdir / "modelrouter.yaml"
    config.write_text(CONFIG.format(u=suffix, key=KEY, openai_base_url=openai_upstream.base_url))
    otlp = OtlpReceiver()
    otlp.start()
    ports = Ports(gateway=free_port(), router=free_port(), workers_health=free_port(), accounting_health=free_port())
    stack = Stack(
        ports=ports,
        log_dir=Path(workdir),
        env={
            "MODELROUTER_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            # A usage stream of this session's own: nothing else consumes or floods it.
            "USAGE_STREAM": f"MR_USAGE_E2E_{suffix}",
            "USAGE_SUBJECT": f"mr.v1.usage.e2e{suffix}",
            # Jobs only this session's workers take: another stack's workers lack our upstream key.
            "JOBS_SUBJECT": f"mr.v1.jobs.e2e{suffix}",
            "KEYS_BUCKET": f"MR_KEYS_E2E_{suffix}",
            "ADMIN_SUBJECT": f"mr.v1.admin.e2e{suffix}",
            "LEDGER_SUBJECT": f"mr.v1.ledger.e2e{suffix}",
            "ANALYTICS_SUBJECT": f"mr.v1.analytics.e2e{suffix}",
            "E2E_OPENAI_UPSTREAM_KEY": UPSTREAM_KEY,
            "API_KEYS": "",
            "STALL_TIMEOUT_S": "3",
            "ACCEPT_TIMEOUT_S": "3",
            "DRAIN_TIMEOUT_S": "10",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        stack.start(timeout=60)
        yield RunningStack(stack, f"http://127.0.0.1:{ports.gateway}", database_url, otlp, suffix)
    finally:
        codes = stack.stop()
        otlp.stop()
        asyncio.run(_delete_stream(nats_url, f"MR_USAGE_E2E_{suffix}"))
        asyncio.run(_delete_stream(nats_url, f"KV_MR_KEYS_E2E_{suffix}"))
    assert all(code == 0 for code in codes.values()), f"services did not exit cleanly: {codes}"
