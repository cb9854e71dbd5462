"""``python -m accounting`` as a process with the admin API: at start it creates the keys bucket and
fills it from Postgres, it answers the admin envelope on the default subjects, and its log (at
DEBUG) never holds a secret it handed out."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
from pathlib import Path

import asyncpg
import nats
import orjson
import pytest

from common import subjects
from common.kv_contents import current_keys
from modelrouter.keys.v1 import keys_pb2
from tests.integration.test_accounting_service import (
    PrivateNats,
    Service,
    _env,
    _free_port,
    _pg,
    private_nats,
    wait_until,
)

pytestmark = pytest.mark.integration
__all__ = ["private_nats"]


async def _admin(nc: nats.NATS, method: str, path: str, body: object = None) -> tuple[int, dict]:
    envelope = {"method": method, "path": path, "query": {}, "body": body}
    reply = await nc.request(subjects.ADMIN, orjson.dumps(envelope), timeout=10)
    answer = orjson.loads(reply.data)
    return answer["status"], answer["body"]


async def test_start_fills_a_new_bucket_and_no_secret_reaches_the_log(
    migrated_url: str, private_nats: PrivateNats, tmp_path: Path, unique: str
) -> None:
    # A key Postgres has and no bucket does yet (a NATS that lost its store, or a first start).
    preexisting = f"key_{unique}abcdef"[:20]
    conn = await asyncpg.connect(_pg(migrated_url))
    try:
        await conn.execute(
            "INSERT INTO api_keys (id, name, digest, display, role, models, metadata, previous_secrets)"
            " VALUES ($1, 'from before', $2, 'sk-mr-…abcd', 'client', '{}', '{}', '[]')",
            preexisting,
            hashlib.sha256(unique.encode()).hexdigest(),
        )
    finally:
        await conn.close()

    health_port = _free_port()
    log_path = tmp_path / "accounting.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "accounting",
            env=_env(
                DATABASE_URL=migrated_url, NATS_URL=private_nats.url, HEALTH_PORT=str(health_port), LOG_LEVEL="DEBUG"
            ),
            stdout=log,
            stderr=log,
        )
    service = Service(proc, health_port, log_path)
    try:
        await service.wait_ready()
        nc = await nats.connect(private_nats.url)
        try:
            kv = await nc.jetstream().key_value(subjects.KEYS_BUCKET)

            async def synced() -> bool:
                return f"key.{preexisting}" in await current_keys(kv, 10)

            await wait_until(synced, timeout=10, what="the start-up sync")
            assert keys_pb2.KeyRecord.FromString((await kv.get(f"key.{preexisting}")).value).name == "from before"

            status, created = await _admin(nc, "POST", "/admin/keys", {"name": "logged?", "rpm": 5})
            assert status == 201, created
            status, rotated = await _admin(nc, "POST", f"/admin/keys/{created['id']}/rotate", {"grace_period_s": 60})
            assert status == 200, rotated
            # A secret pasted where it does not belong (a field, a path) is not echoed into the log either.
            await _admin(nc, "PATCH", f"/admin/keys/{created['id']}", {"key": created["key"]})
            await _admin(nc, "GET", f"/admin/keys/{rotated['key']}")
            await _admin(nc, "DELETE", f"/admin/keys/{created['id']}")
        finally:
            await nc.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=20) == 0, service.log()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    text = service.log()
    assert created["id"] in text and "rotated key" in text  # the log did record the admin work
    for secret in (created["key"], rotated["key"]):
        assert secret not in text
        assert secret[len("sk-mr-") :] not in text
