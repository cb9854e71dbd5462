"""Real backing services for the suite: the running Redis, NATS (JetStream) and Postgres.

Where one is not running and a Docker engine is, it is started with testcontainers; otherwise the
tests that need it fail naming what is missing. Nothing is skipped silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scripts.preflight import DEFAULT_PORTS, reachable
from tests.contract.server import UpstreamServer
from tests.contract.upstreams.openai import WIRE as OPENAI_WIRE

_URL_ENV = {"redis": "REDIS_URL", "nats": "NATS_URL", "postgres": "DATABASE_URL"}
_DEFAULTS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
}


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def _container_url(service: str, stack: list[object]) -> str:
    """Start ``service`` with testcontainers (only reached when it is not already running)."""
    try:
        from testcontainers.core.container import DockerContainer  # type: ignore[import-not-found]
        from testcontainers.core.waiting_utils import wait_for_logs  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail(f"{service} is not running and testcontainers is not installed")
    image, port, ready, scheme = {
        "redis": ("redis:7", 6379, "Ready to accept connections", "redis://{h}:{p}/0"),
        "nats": ("nats:2.10", 4222, "Server is ready", "nats://{h}:{p}"),
        "postgres": (
            "postgres:16",
            5432,
            "ready to accept connections",
            "postgresql+asyncpg://postgres@{h}:{p}/postgres",
        ),
    }[service]
    container = DockerContainer(image).with_exposed_ports(port)
    if service == "nats":
        container = container.with_command("-js")
    if service == "postgres":
        container = container.with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
    container.start()
    stack.append(container)
    wait_for_logs(container, ready, timeout=60)
    return scheme.format(h=container.get_container_host_ip(), p=container.get_exposed_port(port))


@pytest.fixture(scope="session")
def _containers() -> Iterator[list[object]]:
    stack: list[object] = []
    yield stack
    for container in stack:
        container.stop()  # type: ignore[attr-defined]


def _service_url(service: str, stack: list[object]) -> str:
    url = os.environ.get(_URL_ENV[service], _DEFAULTS[service])
    reason = reachable(url, DEFAULT_PORTS[service])
    if reason is None:
        return url
    if _docker_available():
        return _container_url(service, stack)
    pytest.fail(f"{service} at {url} is not reachable ({reason}) and no Docker engine is available")


@pytest.fixture(scope="session")
def redis_url(_containers: list[object]) -> str:
    return _service_url("redis", _containers)


@pytest.fixture(scope="session")
def nats_url(_containers: list[object]) -> str:
    return _service_url("nats", _containers)


@pytest.fixture(scope="session")
def postgres_url(_containers: list[object]) -> str:
    """The server's URL (database ``postgres``); tests create their own databases on it."""
    return _service_url("postgres", _containers)


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database for this test session, dropped at the end; migrations are the tests' job."""
    import asyncio

    import asyncpg

    name = f"mr_test_{uuid.uuid4().hex[:10]}"
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_url.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def unique() -> str:
    """A short unique token for names (deployment ids, subjects) so tests never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """A NATS connection of the test's own."""
    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this process, through the global tracer provider the services' code uses
    (installed here if no SDK provider is yet). Shared by the session: filter by trace id or clear."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another test installed a non-SDK tracer provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(scope="session")
def openai_wire_server() -> Iterator[UpstreamServer]:
    """One fake upstream speaking OpenAI's wire format, for every test that calls the openai adapter
    directly (the e2e stack has its own)."""
    with UpstreamServer(OPENAI_WIRE) as server:
        yield server


@pytest.fixture
def openai_wire(openai_wire_server: UpstreamServer) -> Iterator[UpstreamServer]:
    """That upstream answering normally, and left so for the next test (a held stream let go)."""
    openai_wire_server.reset()
    yield openai_wire_server
    openai_wire_server.release()
    openai_wire_server.reset()
