"""Fixtures of the deploy checks: image file trees assembled from the Dockerfile, a database of
their own, and a NATS server of their own for the service-start checks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.deploy import image_tree
from tests.deploy.dockerfile_model import SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile

TARGETS = (*SERVICES, "migrate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def image_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each target's filesystem as the Dockerfile's COPY lines lay it out (see image_tree)."""
    model = load_dockerfile()
    work = tmp_path_factory.mktemp("images")
    protos = image_tree.build_protos_stage(model, work / "protos")
    return {target: image_tree.assemble(model, target, work / target, protos) for target in TARGETS}


@pytest.fixture(scope="session")
def private_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream NATS server for these checks alone (a real nats-server, on a free port).

    The services bind fixed names: the workers' queue group and accounting's durable consumer on
    the MR_USAGE stream. On the shared server they would take jobs and usage events meant for other
    tests' processes running at the same time, so the processes started here get their own server.
    """
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.fail("nats-server is not installed (needed for a private JetStream server)")
    port = free_port()
    store = tmp_path_factory.mktemp("nats")
    log = store / "nats.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nats-server did not start on port {port}:\n{log.read_text()}")
            time.sleep(0.1)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def new_database(postgres_url: str) -> Iterator[Callable[[], str]]:
    """Creates fresh databases of the deploy checks' own on the test server; drops them at the end."""
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, _ = postgres_url.rpartition("/")
    created: list[str] = []

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create() -> str:
        name = f"mr_deploy_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"{base}/{name}"

    yield create
    for name in created:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
