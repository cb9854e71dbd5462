"""``python -m accounting`` as a process: start-up failures, readiness, and draining on SIGTERM.

Tests that let the service consume give it a private nats-server, so its real stream (MR_USAGE)
and durable (accounting) are never those of the shared NATS other tests and services use.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from common import subjects
from common.messaging import START_HINTS
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("libs", "libs/protos", "services"))


def _env(**overrides: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH, "LOG_LEVEL": "INFO", **overrides}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _sql(url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(_pg(url))
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT / "services" / "accounting",
        env=_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return database_url


def _run_accounting(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accounting"],
        env=_env(HEALTH_PORT="0", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exits_1_naming_postgres_when_it_is_unreachable(nats_url: str) -> None:
    done = _run_accounting(DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/nowhere", NATS_URL=nats_url)
    assert done.returncode == 1
    assert "postgres at postgresql+asyncpg://postgres@127.0.0.1:1/nowhere is not reachable" in done.stderr
    assert START_HINTS["postgres"] in done.stderr


def test_exits_1_asking_for_make_migrate_when_the_table_is_missing(postgres_url: str, unique: str) -> None:
    name = f"mr_test_acct_nomig_{unique}"
    asyncio.run(_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        base, _, _ = postgres_url.rpartition("/")
        done = _run_accounting(DATABASE_URL=f"{base}/{name}", NATS_URL="nats://127.0.0.1:1")
    finally:
        asyncio.run(_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert done.returncode == 1
    assert "table usage_records does not exist" in done.stderr and "make migrate" in done.stderr


def test_exits_1_naming_nats_when_it_is_unreachable(migrated_url: str) -> None:
    done = _run_accounting(DATABASE_URL=migrated_url, NATS_URL="nats://127.0.0.1:1")
    assert done.returncode == 1
    assert "nats at nats://127.0.0.1:1 is not reachable" in done.stderr
    assert START_HINTS["nats"] in done.stderr


class PrivateNats:
    """A nats-server of this test's own (loopback, random port, temporary store)."""

    def __init__(self, store: Path, *, jetstream: bool = True) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server is not on PATH (Debian package nats-server)")
        self._port = _free_port()
        self._cmd = [binary, "-a", "127.0.0.1", "-p", str(self._port)]
        if jetstream:
            self._cmd += ["-js", "-sd", str(store)]
        self.url = f"nats://127.0.0.1:{self._port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def test_exits_1_when_nats_has_no_jetstream(migrated_url: str, tmp_path: Path) -> None:
    plain = PrivateNats(tmp_path, jetstream=False)
    plain.start()
    try:
        done = _run_accounting(DATABASE_URL=migrated_url, NATS_URL=plain.url)
    finally:
        plain.stop()
    assert done.returncode == 1
    assert "is JetStream enabled?" in done.stderr and START_HINTS["nats"] in done.stderr


class Service:
    def __init__(self, proc: asyncio.subprocess.Process, health_port: int, log: Path) -> None:
        self.proc, self.health_port, self._log = proc, health_port, log

    async def ready_status(self) -> int | None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.health_port)
        except OSError:
            return None
        writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        status_line = await reader.readline()
        writer.close()
        return int(status_line.split()[1]) if status_line else None

    async def wait_ready(self, status: int = 200) -> None:
        async def answered() -> bool:
            assert self.proc.returncode is None, self.log()
            return await self.ready_status() == status

        await wait_until(answered, what=f"/ready {status}")

    def log(self) -> str:
        return self._log.read_text(errors="replace")


@asynccontextmanager
async def running_accounting(database_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    health_port = _free_port()
    log_path = tmp_path / "accounting.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "accounting",
            env=_env(DATABASE_URL=database_url, NATS_URL=nats_url, HEALTH_PORT=str(health_port), DRAIN_TIMEOUT_S="10"),
            stdout=log,
            stderr=log,
        )
        try:
            yield Service(proc, health_port, log_path)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _event(request_id: str) -> bytes:
    return events_pb2.UsageEvent(
        request_id=request_id,
        key_id="key_00000000cafef00d",
        endpoint="/v1/chat/completions",
        requested_model="demo-chat",
        status=events_pb2.REQUEST_STATUS_SUCCESS,
        http_status=200,
        usage=events_pb2.Usage(prompt_tokens=7, completion_tokens=5, total_tokens=12),
        price=router_pb2.Price(prompt_per_1k=0.001, completion_per_1k=0.002),
        attempts=1,
        started_at_unix_ms=1_760_000_000_000,
        finished_at_unix_ms=1_760_000_000_010,
    ).SerializeToString()


async def test_sigterm_finishes_the_batch_in_hand_and_exits_0(
    migrated_url: str, private_nats: PrivateNats, tmp_path: Path, unique: str
) -> None:
    count = 3_000
    async with running_accounting(migrated_url, private_nats.url, tmp_path) as service:
        await service.wait_ready()
        nc = await nats.connect(private_nats.url)
        try:
            js = nc.jetstream()
            await asyncio.gather(
                *(
                    js.publish(
                        subjects.USAGE, _event(f"{unique}-{i}"), headers={subjects.MSG_ID_HEADER: f"{unique}-{i}"}
                    )
                    for i in range(count)
                )
            )

            def stored() -> Awaitable[Any]:
                return _sql(migrated_url, "SELECT count(*) FROM usage_records WHERE request_id LIKE $1", f"{unique}-%")

            async def some_stored() -> bool:
                return bool(await stored() > 0)

            await wait_until(some_stored, what="the first rows")
            service.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(service.proc.wait(), timeout=20) == 0, service.log()

            info = await js.consumer_info(subjects.USAGE_STREAM, subjects.ACCOUNTING_DURABLE)
        finally:
            await nc.close()
        rows = await stored()
    # Nothing was left delivered-but-unsettled, and every acked event is a stored row.
    assert info.num_ack_pending == 0, service.log()
    assert rows == info.ack_floor.stream_seq
    assert "stopped" in service.log()


async def test_ready_follows_the_nats_connection(migrated_url: str, private_nats: PrivateNats, tmp_path: Path) -> None:
    async with running_accounting(migrated_url, private_nats.url, tmp_path) as service:
        await service.wait_ready(200)
        private_nats.stop()
        await service.wait_ready(503)
        private_nats.start()
        await service.wait_ready(200)
        service.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(service.proc.wait(), timeout=20) == 0, service.log()
