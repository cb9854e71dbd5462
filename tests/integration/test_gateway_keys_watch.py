"""The gateway's keyring fed by the keys bucket over real NATS JetStream (``gateway.keyring_watch``):
loaded at start, a change on the bucket reaches the keyring within a second, a deletion too, and a
missed update heals at the next snapshot."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from common.errors import AuthenticationError
from common.messaging import connect_nats, ensure_keys_bucket
from common.settings import GatewaySettings
from gateway.keyring import Keyring, digest
from gateway.keyring_watch import KeyringWatch
from modelrouter.keys.v1 import keys_pb2

pytestmark = pytest.mark.integration

SECRET = "sk-mr-watched-secret-0123456789"


@pytest.fixture
async def bucket(nc: NATS) -> AsyncIterator[str]:
    name = f"MR_KEYS_TEST_{uuid.uuid4().hex[:8]}"
    await ensure_keys_bucket(nc, name)
    yield name
    await nc.jetstream().delete_key_value(name)


def key_record(**fields: object) -> keys_pb2.KeyRecord:
    base: dict[str, object] = {"id": "key_w", "name": "watched", "digest": digest(SECRET).hex(), "role": "client"}
    return keys_pb2.KeyRecord(**(base | fields))  # type: ignore[arg-type]


async def within(seconds: float, condition: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def knows(keys: Keyring, **expected: object) -> Callable[[], bool]:
    def check() -> bool:
        try:
            principal = keys.authenticate(f"Bearer {SECRET}", None)
        except AuthenticationError as exc:
            return expected.get("refused") == exc.code
        if "refused" in expected:
            return False
        return all(getattr(principal, name) == value for name, value in expected.items())

    return check


async def test_the_bucket_is_loaded_at_start_and_changes_arrive_within_a_second(nc: NATS, bucket: str) -> None:
    kv = await nc.jetstream().key_value(bucket)
    await kv.put("team.t1", keys_pb2.TeamRecord(id="t1", name="a", limits=keys_pb2.Limits(rpm=5)).SerializeToString())
    await kv.put("key.key_w", key_record(team_id="t1").SerializeToString())
    keys = Keyring(GatewaySettings(), [], environ={})
    watch = KeyringWatch(nc, keys, bucket, resync_s=300)
    await watch.start()
    try:
        assert knows(keys, key_id="key_w", team_id="t1")()  # loaded before start returned
        assert keys.authenticate(f"Bearer {SECRET}", None).team_limits.rpm == 5  # type: ignore[union-attr]

        await kv.put("key.key_w", key_record(revoked_at_ms=1, updated_at_ms=2).SerializeToString())
        assert await within(1.0, knows(keys, refused="key_revoked")) < 1.0
        assert keys.version_of("key", "key_w") == 2

        await kv.put(
            "team.t1", keys_pb2.TeamRecord(id="t1", name="a", limits=keys_pb2.Limits(rpm=9)).SerializeToString()
        )
        await kv.put("key.key_w", key_record(team_id="t1").SerializeToString())
        await within(1.0, lambda: knows(keys)() and keys.authenticate(f"Bearer {SECRET}", None).team_limits.rpm == 9)  # type: ignore[union-attr]

        await kv.delete("key.key_w")
        await within(1.0, knows(keys, refused="invalid_api_key"))
    finally:
        await watch.stop()


async def test_a_missed_update_heals_at_the_next_snapshot(
    nc: NATS, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = await nc.jetstream().key_value(bucket)
    keys = Keyring(GatewaySettings(), [], environ={})
    watch = KeyringWatch(nc, keys, bucket, resync_s=0.5)
    monkeypatch.setattr(watch, "_apply", lambda *args, **kwargs: None)  # every live update is lost
    await watch.start()
    try:
        await kv.put("key.key_w", key_record().SerializeToString())
        await within(3.0, knows(keys, key_id="key_w"))  # brought by a fresh snapshot, not the update
        assert watch.snapshots >= 2
    finally:
        await watch.stop()


async def test_a_gateway_started_before_the_bucket_exists_still_serves_its_own_keys(nc: NATS) -> None:
    name = f"MR_KEYS_TEST_{uuid.uuid4().hex[:8]}"
    keys = Keyring(GatewaySettings(api_keys="sk-operator-0123456789"), [], environ={})
    watch = KeyringWatch(nc, keys, name, resync_s=300)
    try:
        await watch.start(timeout_s=2)  # it creates the bucket: either side may start first
        assert keys.authenticate("Bearer sk-operator-0123456789", None).role == "ops"
        kv = await nc.jetstream().key_value(name)
        await kv.put("key.key_w", key_record().SerializeToString())
        await within(1.0, knows(keys, key_id="key_w"))
    finally:
        await watch.stop()
        await nc.jetstream().delete_key_value(name)


async def test_the_watch_heals_after_nats_restarts(tmp_path: Path) -> None:
    """A private nats-server (the machine's own is never stopped) restarted under the gateway's
    connection: a change made while the gateway was cut off arrives once it has reconnected."""
    port = _free_port()
    store = tmp_path / "js"

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            [
                shutil.which("nats-server") or "/usr/sbin/nats-server",
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-js",
                "-sd",
                str(store),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _listening(port):
            assert time.monotonic() < deadline, "the private nats-server did not start"
            time.sleep(0.05)
        return server

    server = start()
    url = f"nats://127.0.0.1:{port}"
    gateway_nc = await connect_nats(url, "test-watch-reconnect")
    keys = Keyring(GatewaySettings(), [], environ={})
    watch = KeyringWatch(gateway_nc, keys, "MR_KEYS", resync_s=300)
    try:
        await watch.start()
        server.terminate()
        server.wait(10)
        server = start()
        writer = await nats.connect(url)
        try:
            kv = await ensure_keys_bucket(writer, "MR_KEYS")
            await kv.put("key.key_w", key_record().SerializeToString())
        finally:
            await writer.close()
        await within(10.0, knows(keys, key_id="key_w"))
    finally:
        await watch.stop()
        await gateway_nc.close()
        server.terminate()
        server.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
