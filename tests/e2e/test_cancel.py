"""A client that gives up before the worker has even said it took the job (workers send ``accepted``
only after a short delay, so the gateway does not know the worker yet): the worker's upstream call is
still cancelled, and the request is accounted as cancelled with the usage counted so far. The same
for a streamed request whose client leaves before the first token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.contract.server import Stall, UpstreamServer
from tests.e2e.conftest import KEY, RunningStack

pytestmark = pytest.mark.e2e

# Well inside the workers' default accept delay (0.1 s).
CLIENT_PATIENCE_S = 0.02
# Longer than the gateway waits for a cancelled worker's usage (2 s): only a cancel answers sooner.
UPSTREAM_STALL_S = 4.0


@pytest.fixture
def stalling_upstream(openai_upstream: UpstreamServer) -> Iterator[UpstreamServer]:
    openai_upstream.reset(Stall(UPSTREAM_STALL_S))
    yield openai_upstream
    openai_upstream.reset()


async def cancelled_rows(stack: RunningStack, since: float, stream: bool) -> list[Any]:
    return await stack.fetch(
        "SELECT * FROM usage_records WHERE deployment_id = $1 AND status = 'cancelled'"
        " AND started_at >= to_timestamp($2) AND stream = $3",
        stack.deployment("oai"),
        since,
        stream,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_client_gone_before_accepted_cancels_the_upstream_call(
    running_stack: RunningStack, stalling_upstream: UpstreamServer, stream: bool
) -> None:
    since = time.time() - 1
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=CLIENT_PATIENCE_S)) as http:
        with pytest.raises(httpx.ReadTimeout):  # the client hangs up here, before any answer
            await http.post(
                f"{running_stack.base_url}/v1/chat/completions",
                json={
                    "model": "oai",
                    "messages": [{"role": "user", "content": "Are you still there?"}],
                    "stream": stream,
                },
                headers={"Authorization": f"Bearer {KEY}"},
            )

    deadline = time.monotonic() + 15
    while True:
        rows = await cancelled_rows(running_stack, since, stream)
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    [row] = rows
    assert row["http_status"] == 499
    # The worker's partial usage: the prompt went upstream, nothing came back. It arrived in time
    # only because the worker was cancelled (the upstream would have stalled for 4 s).
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 0
    assert row["latency_ms"] < 2000
