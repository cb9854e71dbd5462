"""Postgres away, behind a TCP proxy of the test's own (the real server is never touched): admin
requests answer 503 "database unreachable" within seconds, spend queries answer an error, the
keys bucket keeps serving, and everything works again once Postgres is back, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from sqlalchemy.engine import make_url

from accounting.admin.runtime import start_keys
from modelrouter.keys.v1 import keys_pb2
from tests.integration.accounting_admin import AdminClient, settings_for
from tests.integration.test_accounting_service import _free_port

pytestmark = pytest.mark.integration
# An admin answer when Postgres is away: connect/statement time (ADMIN_DB_TIMEOUT_S, 3 s) and more.
WITHIN_S = 7.0


class TcpProxy:
    """Forwards 127.0.0.1:<port> to Postgres. ``stop`` closes the port and every open connection
    (Postgres gone); ``hang`` keeps accepting but forwards nothing (Postgres not answering)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self.hang = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        if self.hang:
            return  # the connection stays open and silent until stop()
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.add(server_w)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def proxied_admin(
    migrated_url: str, nats_url: str, nc: NATS, unique: str, proxy: TcpProxy
) -> AsyncIterator[AdminClient]:
    url = make_url(migrated_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = settings_for(url, nats_url, unique)
    runtime = await start_keys(settings, nc)
    js = nc.jetstream()
    try:
        yield AdminClient(nc, settings, runtime, await js.key_value(settings.keys_bucket), None)  # type: ignore[arg-type]
    finally:
        await runtime.stop(5)
        await js.delete_key_value(settings.keys_bucket)


async def _timed(admin: AdminClient, method: str, path: str, body: object = None) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, answer = await admin.call(method, path, body, timeout=30)
    return status, answer, time.monotonic() - started


async def test_postgres_gone_answers_503_quickly_and_recovers_without_restart(
    proxied_admin: AdminClient, proxy: TcpProxy
) -> None:
    admin = proxied_admin
    before = await admin.ok("POST", "/admin/keys", {"name": "before the outage"}, status=201)

    await proxy.stop()
    for method, path, body in [
        ("POST", "/admin/keys", {"name": "during the outage"}),
        ("PATCH", f"/admin/keys/{before['id']}", {"rpm": 1}),
        ("GET", f"/admin/keys/{before['id']}", None),
        ("GET", "/admin/teams", None),
    ]:
        status, answer, took = await _timed(admin, method, path, body)
        assert status == 503, answer
        assert answer["error"]["code"] == "database_unavailable" and answer["error"]["type"] == "api_error"
        assert "database is unreachable" in answer["error"]["message"]
        assert took < WITHIN_S, f"{method} {path} took {took:.1f}s"

    started = time.monotonic()
    reply = await admin.nc.request(
        admin.settings.ledger_subject,
        keys_pb2.SpendQuery(key_id=before["id"], since_ms=0).SerializeToString(),
        timeout=10,
    )
    spend = keys_pb2.SpendAnswer.FromString(reply.data)
    assert "unreachable" in spend.error and time.monotonic() - started < 3.0

    # The gateways' copy is untouched: known keys keep working.
    assert (await admin.key_record(before["id"])).name == "before the outage"

    await proxy.start()
    after = await admin.ok("POST", "/admin/keys", {"name": "after the outage"}, status=201)  # the first request works
    assert (await admin.key_record(after["id"])).name == "after the outage"
    assert (await admin.ok("PATCH", f"/admin/keys/{before['id']}", {"rpm": 1}))["rpm"] == 1


async def test_postgres_not_answering_is_a_503_within_seconds_not_a_hang(
    proxied_admin: AdminClient, proxy: TcpProxy
) -> None:
    admin = proxied_admin
    await proxy.stop()
    proxy.hang = True  # connections are accepted and then nothing happens
    await proxy.start()
    status, answer, took = await _timed(admin, "POST", "/admin/keys", {"name": "into the void"})
    assert status == 503 and answer["error"]["code"] == "database_unavailable", answer
    assert took < WITHIN_S, f"took {took:.1f}s"

    await proxy.stop()
    proxy.hang = False
    await proxy.start()
    await admin.ok("POST", "/admin/keys", {"name": "answered again"}, status=201)
