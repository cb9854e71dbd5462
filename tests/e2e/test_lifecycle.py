"""Graceful shutdown: an in-flight stream finishes across a SIGTERM of the gateway and of the worker
serving it; the process then exits 0 and the request is accounted once, as a success."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.stack import Ports, Stack
from tests.e2e.conftest import KEY, free_port, migrate
from tests.e2e.test_spine import eventually

pytestmark = pytest.mark.e2e

# ~40 chunks at 20 per second: two seconds of stream, well inside the drain time.
CONFIG = """
providers:
  dripping: {{adapter: fake, options: {{tokens_per_second: "20"}}}}
deployments:
  - {{id: drip-{u}, model: drip, provider: dripping}}
keys:
  - {{key: {key}, id: lifecycle}}
"""
PROMPT = " ".join(f"word{i}" for i in range(30))


@pytest.fixture
def stack(redis_url: str, nats_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    migrate(database_url)
    suffix = uuid.uuid4().hex[:8]
    config = tmp_path / "modelrouter.yaml"
    config.write_text(CONFIG.format(u=suffix, key=KEY))
    ports = Ports(gateway=free_port(), router=free_port(), workers_health=free_port(), accounting_health=free_port())
    running = Stack(
        ports=ports,
        log_dir=tmp_path,
        env={
            "MODELROUTER_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "USAGE_STREAM": f"MR_USAGE_LIFE_{suffix}",
            "USAGE_SUBJECT": f"mr.v1.usage.life{suffix}",
            "DRAIN_TIMEOUT_S": "15",
        },
    )
    running.start(timeout=60)
    try:
        yield running
    finally:
        running.stop()
        from tests.e2e.conftest import _delete_stream

        asyncio.run(_delete_stream(nats_url, f"MR_USAGE_LIFE_{suffix}"))


async def _ready_status(stack: Stack) -> int | None:
    """The gateway's /ready status, or None when it no longer accepts connections."""
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"http://127.0.0.1:{stack.ports.gateway}/ready")).status_code
    except httpx.ConnectError:
        return None


async def _stream_across_sigterm(stack: Stack, victim: str) -> tuple[list[str], str, int | None]:
    url = f"http://127.0.0.1:{stack.ports.gateway}/v1/chat/completions"
    body = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    events: list[str] = []
    ready_while_draining: int | None = 200
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        async for line in response.aiter_lines():
            if not line:
                continue
            events.append(line)
            if len(events) == 3:
                stack.procs[victim].send_signal(signal.SIGTERM)
            if len(events) == 8:
                ready_while_draining = await _ready_status(stack)
    return events, request_id, ready_while_draining


def _exit_code(stack: Stack, service: str) -> int:
    try:
        return stack.procs[service].wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{service} did not exit within 30s of SIGTERM:\n{stack.tail(service)}")


async def _usage_status(database_url: str, request_id: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT status FROM usage_records WHERE request_id = $1", request_id)
    finally:
        await conn.close()
    return [r["status"] for r in rows]


async def test_stream_survives_sigterm_of_the_gateway(stack: Stack, database_url: str) -> None:
    started = time.monotonic()
    events, request_id, ready_while_draining = await _stream_across_sigterm(stack, "gateway")
    assert events[-1] == "data: [DONE]", events[-3:]
    assert len(events) > 10 and time.monotonic() - started > 1.0, "the stream was not in flight at SIGTERM"
    # While it drains, the gateway takes no new work: the listener is closed (or /ready says 503).
    assert ready_while_draining in (None, 503)
    assert _exit_code(stack, "gateway") == 0
    statuses = await eventually(lambda: _usage_status(database_url, request_id), lambda s: len(s) >= 1)
    assert statuses == ["success"]


async def test_stream_survives_sigterm_of_its_worker(stack: Stack, database_url: str) -> None:
    events, request_id, _ = await _stream_across_sigterm(stack, "workers")
    assert events[-1] == "data: [DONE]", events[-3:]
    assert not any('"error"' in e for e in events)
    assert len(events) > 10
    assert _exit_code(stack, "workers") == 0
    statuses = await eventually(lambda: _usage_status(database_url, request_id), lambda s: len(s) >= 1)
    assert statuses == ["success"]
