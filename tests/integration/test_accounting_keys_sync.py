"""The full sync heals the keys bucket from Postgres: a lost entry, a stale one, one Postgres does
not know, a lost bucket; and it keeps revoked keys for 30 days, not longer."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError
from sqlalchemy import text

from accounting.admin.bucket import KeyBucket
from accounting.admin.runtime import start_keys
from accounting.admin.sync import BucketSync
from common.kv_contents import current_keys
from modelrouter.keys.v1 import keys_pb2
from tests.integration.accounting_admin import AdminClient, admin, eventually, settings_for

pytestmark = pytest.mark.integration
__all__ = ["admin"]


async def test_sync_restores_a_deleted_entry_and_a_stale_one(admin: AdminClient) -> None:
    lost = await admin.ok("POST", "/admin/keys", {"name": "lost"}, status=201)
    stale = await admin.ok("POST", "/admin/keys", {"name": "stale", "rpm": 10}, status=201)
    team = await admin.ok("POST", "/admin/teams", {"name": "t", "rpm": 5}, status=201)
    good = await admin.key_record(stale["id"])
    await admin.kv.delete(f"key.{lost['id']}")
    await admin.kv.purge(f"team.{team['id']}")
    wrong = keys_pb2.KeyRecord()
    wrong.CopyFrom(good)
    wrong.limits.rpm = 1_000_000  # what a hand edit or an old backup might say
    await admin.kv.put(f"key.{stale['id']}", wrong.SerializeToString())

    await admin.sync().sync_once()

    # (How many entries this round put is not asserted: the service's own sync loop may have healed
    # some first on a slow machine. What the bucket holds afterwards is what matters.)
    assert (await admin.key_record(lost["id"])).name == "lost"
    assert (await admin.key_record(stale["id"])) == good
    assert (await admin.team_record(team["id"])).limits.rpm == 5
    # A second round finds nothing to do.
    assert (await admin.sync().sync_once()).put == 0


async def test_sync_deletes_entries_postgres_does_not_have(admin: AdminClient) -> None:
    kept = await admin.ok("POST", "/admin/keys", {"name": "kept"}, status=201)
    ghost = keys_pb2.KeyRecord(id="key_00000000deadbeef", name="ghost", digest="ab" * 32, role="client")
    await admin.kv.put("key.key_00000000deadbeef", ghost.SerializeToString())
    await admin.kv.put(
        "team.team_00000000deadbeef", keys_pb2.TeamRecord(id="team_00000000deadbeef").SerializeToString()
    )

    report = await admin.sync().sync_once()

    assert report.deleted == 2
    names = await current_keys(admin.kv, 10)
    assert "key.key_00000000deadbeef" not in names and "team.team_00000000deadbeef" not in names
    assert f"key.{kept['id']}" in names


async def test_keys_revoked_over_30_days_ago_leave_the_bucket(admin: AdminClient) -> None:
    recent = await admin.ok("POST", "/admin/keys", {"name": "recently revoked"}, status=201)
    old = await admin.ok("POST", "/admin/keys", {"name": "long revoked"}, status=201)
    await admin.ok("DELETE", f"/admin/keys/{recent['id']}")
    await admin.ok("DELETE", f"/admin/keys/{old['id']}")
    async with admin.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = now() - interval '31 days' WHERE id = :id"), {"id": old["id"]}
        )

    await admin.sync().sync_once()

    names = await current_keys(admin.kv, 10)
    assert f"key.{recent['id']}" in names and f"key.{old['id']}" not in names


async def test_a_lost_bucket_is_rebuilt_whole(admin: AdminClient, unique: str) -> None:
    """E.g. NATS lost its JetStream store: a new empty bucket is refilled from Postgres."""
    key = await admin.ok("POST", "/admin/keys", {"name": "survivor"}, status=201)
    js = admin.nc.jetstream()
    fresh = await js.create_key_value(KeyValueConfig(bucket=f"MR_KEYS_TEST_{unique}_fresh", history=1))
    try:
        await BucketSync(admin.engine, KeyBucket(fresh)).sync_once()
        record = keys_pb2.KeyRecord.FromString((await fresh.get(f"key.{key['id']}")).value)
        assert record.name == "survivor" and record == await admin.key_record(key["id"])
    finally:
        await js.delete_key_value(f"MR_KEYS_TEST_{unique}_fresh")


async def test_sync_does_not_undo_a_write_made_after_it_read_the_bucket(admin: AdminClient) -> None:
    """Another replica's admin write lands between the sync's read of the bucket and its write."""
    key = await admin.ok("POST", "/admin/keys", {"name": "racing", "rpm": 1}, status=201)
    bucket = KeyBucket(admin.kv)
    seen = (await bucket.snapshot())[f"key.{key['id']}"]
    await admin.ok("PATCH", f"/admin/keys/{key['id']}", {"rpm": 2})
    old_value = seen.value
    assert not await bucket.replace(f"key.{key['id']}", old_value, seen)
    assert (await admin.key_record(key["id"])).limits.rpm == 2


async def test_the_periodic_sync_heals_without_being_asked(
    migrated_url: str, nats_url: str, nc: NATS, unique: str
) -> None:
    """accounting's own loop (KEYS_SYNC_INTERVAL_S), not a test calling sync_once."""
    settings = settings_for(migrated_url, nats_url, f"{unique}p", keys_sync_interval_s=0.5)
    runtime = await start_keys(settings, nc)
    js = nc.jetstream()
    try:
        client = AdminClient(nc, settings, runtime, await js.key_value(settings.keys_bucket), None)  # type: ignore[arg-type]
        key = await client.ok("POST", "/admin/keys", {"name": "periodic"}, status=201)
        await client.kv.delete(f"key.{key['id']}")

        async def back() -> bool:
            try:
                return (await client.key_record(key["id"])).name == "periodic"
            except KeyNotFoundError:
                return False

        await eventually(back, timeout=5, what="the periodic sync to restore the entry")
    finally:
        await runtime.stop(5)
        await js.delete_key_value(settings.keys_bucket)


async def test_a_round_that_read_postgres_before_a_deletion_does_not_bring_the_entry_back(admin: AdminClient) -> None:
    team = await admin.ok("POST", "/admin/teams", {"name": "doomed"}, status=201)
    entry = f"team.{team['id']}"
    value = (await admin.kv.get(entry)).value
    # As a round whose bucket snapshot predates the team's creation, and whose Postgres read predates
    # its deletion, would see it: absent from the bucket, present in Postgres.
    await admin.ok("DELETE", f"/admin/teams/{team['id']}")
    bucket = admin.sync()._bucket
    assert not await bucket.replace(entry, value, None, 0)
    assert entry not in await current_keys(admin.kv, 10)
    # A round that saw the deletion may write it again (Postgres would have to have it back).
    tombstones: dict[str, int] = {}
    await bucket.snapshot(tombstones)
    assert tombstones[entry] > 0
