"""Driving a worker over real NATS, for the workers' integration tests and latency measurement:
build a Job, publish it (with a unique reply subject), read the replies; run a worker in-process or
as a ``python -m workers``-style process, on a unique jobs subject so parallel test runs (and other
people's workers) never take each other's jobs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from nats.aio.client import Client as NATS

from common import subjects
from common.messaging import connect_nats
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from workers.adapters import AdapterPool
from workers.job import ACCEPT_DELAY_S, HEARTBEAT_S, JobExecutor
from workers.providers import REGISTRY
from workers.runner import JobRunner

REPO = Path(__file__).resolve().parents[2]


def make_job(
    *,
    provider: str = "fake",
    base_url: str = "",
    options: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    stream: bool = False,
    include_usage: bool = False,
    api_key_env: str = "",
    timeout_s: float = 5.0,
    operation: int = events_pb2.OPERATION_CHAT_COMPLETIONS,
    request_id: str | None = None,
) -> events_pb2.Job:
    """A job as the gateway sends it (``reply_subject`` is set by ``Inbox.send``)."""
    body = body or {"model": "demo", "messages": [{"role": "user", "content": "ping"}], "stream": stream}
    return events_pb2.Job(
        request_id=request_id or uuid.uuid4().hex,
        target=router_pb2.Target(
            deployment_id=f"dep-{provider}",
            provider=provider,
            upstream_model=f"{provider}-upstream-model",
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            options=dict(options or {}),
        ),
        operation=operation,  # type: ignore[arg-type]
        body=orjson.dumps(body),
        stream=stream,
        include_usage=include_usage,
    )


class Inbox:
    """One reply subject of a pretend gateway, and the replies that arrive on it, in order."""

    def __init__(self, nc: NATS, jobs_subject: str) -> None:
        self.nc = nc
        self.jobs_subject = jobs_subject
        self.subject = subjects.reply(f"test{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
        self.replies: asyncio.Queue[events_pb2.Reply] = asyncio.Queue()

    async def send(self, job: events_pb2.Job, headers: dict[str, str] | None = None) -> None:
        job.reply_subject = self.subject
        await self.nc.publish(self.jobs_subject, job.SerializeToString(), headers=headers)

    async def next(self, timeout: float = 10.0) -> events_pb2.Reply:
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def until_result(self, timeout: float = 10.0) -> list[events_pb2.Reply]:
        """Every reply up to and including the result."""
        replies = [await self.next(timeout)]
        while not replies[-1].HasField("result"):
            replies.append(await self.next(timeout))
        return replies


@asynccontextmanager
async def inbox(nc: NATS, jobs_subject: str) -> AsyncIterator[Inbox]:
    box = Inbox(nc, jobs_subject)

    async def _on_reply(msg: Any) -> None:
        box.replies.put_nowait(events_pb2.Reply.FromString(msg.data))

    sub = await nc.subscribe(box.subject, cb=_on_reply)
    await nc.flush()
    try:
        yield box
    finally:
        await sub.unsubscribe()


@dataclass
class InProcessWorker:
    runner: JobRunner
    worker_id: str
    jobs_subject: str
    nc: NATS
    adapters: AdapterPool
    accept_delay_s: float


@asynccontextmanager
async def in_process_worker(
    nats_url: str,
    *,
    concurrency: int = 16,
    env: Mapping[str, str] | None = None,
    accept_delay_s: float = ACCEPT_DELAY_S,
    heartbeat_s: float = HEARTBEAT_S,
) -> AsyncIterator[InProcessWorker]:
    token = uuid.uuid4().hex[:10]
    worker_id, jobs_subject = f"test-{token}", f"{subjects.JOBS}.test.{token}"
    nc = await connect_nats(nats_url, f"test-worker-{token}")
    adapters = AdapterPool(REGISTRY)
    executor = JobExecutor(
        nc,
        adapters,
        worker_id,
        os.environ if env is None else env,
        accept_delay_s=accept_delay_s,
        heartbeat_s=heartbeat_s,
    )
    runner = JobRunner(nc, executor, worker_id=worker_id, concurrency=concurrency, jobs_subject=jobs_subject)
    await runner.start()
    try:
        yield InProcessWorker(runner, worker_id, jobs_subject, nc, adapters, accept_delay_s)
    finally:
        await runner.drain(2.0)
        await adapters.aclose()
        await nc.drain()


def spawn_worker(nats_url: str, jobs_subject: str, log: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
    """The worker's ``main()`` in its own process (what ``python -m workers`` runs), on ``jobs_subject``;
    its log goes to ``log`` (a file: a pipe nobody reads would fill up and stall the worker)."""
    code = "import sys, workers.main as m; sys.exit(m.main(jobs_subject=sys.argv[1]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, jobs_subject],
        cwd=REPO,
        env={**os.environ, "NATS_URL": nats_url, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def readiness(port: int) -> int | None:
    """What the worker's ``/ready`` answers (None: nothing listens)."""
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/ready", timeout=1)).status_code
    except httpx.TransportError:
        return None


async def wait_for_readiness(port: int, status: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await readiness(port)) != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"/ready answered {seen}, not {status}, within {timeout}s")
        await asyncio.sleep(0.05)
