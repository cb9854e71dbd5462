"""An operator's fault drill: a worker process killed (SIGKILL) while it serves a request, with the
four services running as processes.

Mid-stream, the client's stream ends within 2 s with an in-band ``worker_lost`` error (not after the
30 s stall timeout), and the usage row bills what the client received. Before the first byte, the
gateway sends the job to another worker and the client sees a normal answer."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.helpers import OwnStack, one_usage_row, own_stack
from workers.usage import estimate_tokens

pytestmark = pytest.mark.e2e

KEY = "sk-worker-loss-0123456789"
CONFIG = f"""
providers:
  dripping: {{adapter: fake, options: {{tokens_per_second: "4"}}}}
  slow_start: {{adapter: fake, options: {{latency_ms: "6000"}}}}
deployments:
  - {{id: dripping-loss, model: dripping, provider: dripping}}
  - {{id: slow-start-loss, model: slow-start, provider: slow_start}}
keys:
  - {{key: {KEY}, id: loss-drill}}
"""
PROMPT = "Tell me a long story about workers"


@pytest.fixture(scope="module")
def stack(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnStack]:
    with own_stack(
        CONFIG,
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("worker-loss")),
    ) as running:
        yield running


def kill_the_worker(stack: OwnStack, replacement: bool) -> None:
    """SIGKILL the stack's only worker; with ``replacement``, first start another one to take over
    (which the stack then stops at the end, instead of the dead one)."""
    victim = stack.stack.procs.pop("workers")
    if replacement:
        stack.stack.start_replica("workers", "workers", free_port())
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    if not replacement:
        stack.stack.start_replica("workers", "workers", free_port())


def client(stack: OwnStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=KEY, max_retries=0, timeout=30)


async def test_a_worker_killed_mid_stream_ends_the_stream_in_band_within_2_s(stack: OwnStack) -> None:
    messages: Any = [{"role": "user", "content": PROMPT}]
    received = ""
    with client(stack).chat.completions.with_streaming_response.create(
        model="dripping", messages=messages, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        events = response.iter_lines()
        chunks = 0
        for line in events:
            if line.startswith("data: {") and '"content"' in line:
                chunks += 1
                received += _content(line)
            if chunks == 3:
                break
        kill_the_worker(stack, replacement=False)
        killed_at = time.monotonic()
        rest = [line for line in events if line.startswith("data: ")]
        ended_after = time.monotonic() - killed_at

    for line in rest:
        if '"content"' in line:
            received += _content(line)
    assert ended_after < 2.0, ended_after
    assert '"worker_lost"' in rest[-1] and "stopped responding" in rest[-1], rest[-1]
    row = await one_usage_row(stack.database_url, request_id)
    assert (row["status"], row["http_status"], row["error_type"]) == ("error", 503, "api_error")
    assert row["completion_tokens"] == estimate_tokens(len(received)) > 0
    assert row["prompt_tokens"] == estimate_tokens(len(PROMPT))


async def test_a_worker_killed_before_the_first_byte_is_replaced_and_the_client_sees_a_normal_answer(
    stack: OwnStack,
) -> None:
    answer: dict[str, Any] = {}

    def ask() -> None:
        with client(stack).chat.completions.with_streaming_response.create(
            model="slow-start", messages=[{"role": "user", "content": "Hello"}], stream=True
        ) as response:
            answer["id"] = response.headers["x-request-id"]
            answer["lines"] = [line for line in response.iter_lines() if line.startswith("data: ")]

    asking = threading.Thread(target=ask)
    asking.start()
    await asyncio.sleep(1.0)  # the only worker has the job (its upstream answers after 6 s)
    kill_the_worker(stack, replacement=True)
    asking.join(30)
    assert not asking.is_alive()

    lines = answer["lines"]
    assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines), lines
    assert "Hello" in "".join(_content(line) for line in lines if '"content"' in line)
    row = await one_usage_row(stack.database_url, answer["id"])
    assert (row["status"], row["http_status"], row["attempts"]) == ("success", 200, 2)


def _content(line: str) -> str:
    choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")
