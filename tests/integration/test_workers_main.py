"""The worker process: health/readiness, and SIGTERM draining in-flight jobs before exiting 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import IO

import pytest
from nats.aio.client import Client as NATS

from common import subjects
from common.messaging import connect_nats
from tests.contract.server import closed_port
from tests.contract.worker_jobs import inbox, make_job, spawn_worker, wait_for_readiness

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NATS]:
    nc = await connect_nats(nats_url, "test-workers-main")
    yield nc
    await nc.drain()


@pytest.fixture
def log() -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile() as file:
        yield file


async def wait_exit(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := process.poll()) is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the worker did not exit within {timeout}s")
        await asyncio.sleep(0.05)
    return code


def output(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


async def test_sigterm_lets_jobs_in_flight_finish_then_exits_0(client: NATS, nats_url: str, log: IO[bytes]) -> None:
    jobs_subject, worker_id, port = f"{subjects.JOBS}.test.{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12], closed_port()
    process = spawn_worker(
        nats_url, jobs_subject, log, INSTANCE_ID=worker_id, HEALTH_PORT=str(port), DRAIN_TIMEOUT_S="10"
    )
    try:
        await wait_for_readiness(port, 200)
        async with inbox(client, jobs_subject) as box:
            # About a second of streaming: ten words a second.
            await box.send(make_job(options={"tokens_per_second": "10"}, stream=True))
            first = await box.next()  # the first word goes out at once: no accepted needed
            assert first.HasField("chunk") and first.worker_id == worker_id

            process.send_signal(signal.SIGTERM)
            await wait_for_readiness(port, 503, timeout=5)  # draining: not ready, still serving

            replies = await box.until_result()
        assert replies[-1].result.ok
        assert await wait_exit(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in output(log), output(log)


async def test_jobs_still_running_at_the_drain_timeout_are_stopped_with_a_result(
    client: NATS, nats_url: str, log: IO[bytes]
) -> None:
    jobs_subject, port = f"{subjects.JOBS}.test.{uuid.uuid4().hex[:8]}", closed_port()
    process = spawn_worker(nats_url, jobs_subject, log, HEALTH_PORT=str(port), DRAIN_TIMEOUT_S="0.5")
    try:
        await wait_for_readiness(port, 200)
        async with inbox(client, jobs_subject) as box:
            await box.send(make_job(options={"hang": "true"}, stream=True, timeout_s=60))
            assert (await box.next()).HasField("accepted")
            process.send_signal(signal.SIGTERM)
            result = (await box.until_result())[-1].result
        assert not result.ok and result.error.code == "worker_shutdown" and result.error.retryable
        assert await wait_exit(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in output(log), output(log)
