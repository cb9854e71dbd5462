"""How long the worker hop takes: a pretend gateway sends a Job over NATS to a worker process, which
POSTs to a local OpenAI-format upstream (a process of its own) and replies ([accepted,] [chunks,]
result). Thousands of sequential jobs; prints p50/p90/p99 (run with ``-s`` to see them) and fails
if the hop went badly wrong."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from common import subjects
from common.messaging import connect_nats
from tests.contract import story
from tests.contract.server import closed_port
from tests.contract.worker_jobs import REPO, inbox, make_job, spawn_worker, wait_for_readiness

pytestmark = pytest.mark.integration

WARMUP = 100
# Generous: the measured p50 is a few milliseconds on a shared 2-core machine; this catches a hop
# gone badly wrong (Nagle stalls, a process per job), not scheduler noise.
P50_LIMIT_MS = 50.0


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.contract.server", "openai"], cwd=REPO, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    yield f"http://127.0.0.1:{port}/v1"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


@pytest.mark.parametrize(
    ("provider", "stream", "jobs"),
    [("openai", False, 2000), ("openai", True, 1000), ("fake", False, 1000)],
    ids=["openai", "openai-stream", "fake-no-upstream"],
)
async def test_worker_round_trip_latency(
    nats_url: str, upstream_url: str, provider: str, stream: bool, jobs: int
) -> None:
    jobs_subject = f"{subjects.JOBS}.test.{uuid.uuid4().hex[:8]}"
    body = {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}], "stream": stream}
    base_url = upstream_url if provider == "openai" else ""
    samples: list[float] = []
    with tempfile.TemporaryFile() as log:
        port = closed_port()
        process = spawn_worker(nats_url, jobs_subject, log, HEALTH_PORT=str(port), LOG_LEVEL="WARNING")
        nc = await connect_nats(nats_url, "test-workers-latency")
        try:
            await wait_for_readiness(port, 200)
            async with inbox(nc, jobs_subject) as box:
                for i in range(WARMUP + jobs):
                    job = make_job(provider=provider, base_url=base_url, body=body, stream=stream)
                    started = time.perf_counter()
                    await box.send(job)
                    replies = await box.until_result()
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    assert replies[-1].result.ok, replies[-1].result.error
                    kinds = [r.WhichOneof("kind") for r in replies]
                    # A job this fast sends no accepted: its first chunk or result names the worker.
                    assert replies[0].worker_id and ("chunk" in kinds) == stream
                    if i >= WARMUP:
                        samples.append(elapsed_ms)
        finally:
            await nc.drain()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0

    p50, p90, p99 = (percentile(samples, q) for q in (50, 90, 99))
    print(
        f"\nworker round trip, {provider}{' streamed' if stream else ''} ({jobs} sequential jobs): "
        f"p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms"
    )
    assert p50 < P50_LIMIT_MS
