"""The admin API's keys over NATS (JSON envelope) against the real Postgres and NATS: each write's
answer, what Postgres keeps (a digest, never the secret) and what the keys bucket holds after it."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import Any

import pytest
from sqlalchemy import text

from modelrouter.keys.v1 import keys_pb2
from tests.integration.accounting_admin import AdminClient, admin, eventually

pytestmark = pytest.mark.integration
__all__ = ["admin"]  # the fixture, imported for pytest

KEY_FIELDS = {
    "id", "object", "name", "team_id", "owner", "role", "models", "rpm", "tpm", "max_parallel",
    "daily_budget_usd", "monthly_budget_usd", "expires_at", "revoked_at", "metadata", "display",
    "created_at", "updated_at", "store_bodies",
}  # fmt: skip
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def _stored(admin: AdminClient, key_id: str) -> dict[str, Any]:
    async with admin.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key_id})).mappings().one()
    return dict(row)


async def test_create_answers_201_with_the_secret_once_and_stores_only_its_digest(admin: AdminClient) -> None:
    body = {
        "name": "ci bot",
        "owner": "ops@example.com",
        "role": "ops",
        "models": ["gpt-4o-mini", "demo"],
        "rpm": 60,
        "tpm": 0,
        "daily_budget_usd": 2.5,
        "expires_at": "2030-01-31T12:00:00+01:00",
        "metadata": {"ticket": "OPS-1"},
    }
    created = await admin.ok("POST", "/admin/keys", body, status=201)
    secret = created.pop("key")
    assert set(created) == KEY_FIELDS
    assert re.fullmatch(r"sk-mr-[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"key_[0-9a-f]{16}", created["id"])
    assert created["object"] == "api_key" and created["display"] == f"sk-mr-…{secret[-4:]}"
    assert (created["name"], created["owner"], created["role"]) == ("ci bot", "ops@example.com", "ops")
    assert created["models"] == ["gpt-4o-mini", "demo"] and created["metadata"] == {"ticket": "OPS-1"}
    assert (created["rpm"], created["tpm"], created["max_parallel"]) == (60, 0, None)
    assert (created["daily_budget_usd"], created["monthly_budget_usd"]) == (2.5, None)
    assert created["expires_at"] == "2030-01-31T11:00:00.000Z"
    assert created["team_id"] is None and created["revoked_at"] is None
    assert ISO_UTC.match(created["created_at"]) and ISO_UTC.match(created["updated_at"])

    row = await _stored(admin, created["id"])
    assert row["digest"] == _sha256(secret)
    assert secret not in repr(row)

    # The secret is never shown again.
    again = await admin.ok("GET", f"/admin/keys/{created['id']}")
    assert again == created and "key" not in again

    record = await admin.key_record(created["id"])
    assert record.digest == _sha256(secret) and record.display == created["display"]
    assert (record.name, record.owner, record.role, list(record.models)) == (
        "ci bot",
        "ops@example.com",
        "ops",
        ["gpt-4o-mini", "demo"],
    )
    # Presence: only the limits that exist are set; 0 is a limit of zero, not "none".
    assert record.limits.HasField("rpm") and record.limits.rpm == 60
    assert record.limits.HasField("tpm") and record.limits.tpm == 0
    assert not record.limits.HasField("max_parallel") and not record.limits.HasField("monthly_budget_usd")
    assert record.limits.daily_budget_usd == 2.5
    assert record.expires_at_ms == 1_896_087_600_000 and record.revoked_at_ms == 0
    assert secret.encode() not in record.SerializeToString()


async def test_defaults_and_a_timezone_less_expiry_taken_as_utc(admin: AdminClient) -> None:
    created = await admin.ok("POST", "/admin/keys", {"name": "plain", "expires_at": "2031-05-01T00:00:00"}, status=201)
    assert (created["role"], created["models"], created["metadata"], created["owner"]) == ("client", [], {}, None)
    assert created["expires_at"] == "2031-05-01T00:00:00.000Z"
    record = await admin.key_record(created["id"])
    assert record.role == "client" and not record.limits.ListFields()
    # No store_bodies of its own: the deployment's setting decides (absent in the record, not false).
    assert created["store_bodies"] is None and not record.HasField("store_bodies")


async def test_a_keys_store_bodies_is_set_changed_and_cleared(admin: AdminClient) -> None:
    """The per-key override of the deployment's store_bodies, as the gateways read it from the bucket
    (the record is put before the admin answer)."""
    created = await admin.ok("POST", "/admin/keys", {"name": "texts", "store_bodies": False}, status=201)
    record = await admin.key_record(created["id"])
    assert created["store_bodies"] is False and record.HasField("store_bodies") and not record.store_bodies

    patched = await admin.ok("PATCH", f"/admin/keys/{created['id']}", {"store_bodies": True})
    assert patched["store_bodies"] is True
    assert (await admin.key_record(created["id"])).store_bodies is True

    cleared = await admin.ok("PATCH", f"/admin/keys/{created['id']}", {"store_bodies": None})
    assert cleared["store_bodies"] is None
    assert not (await admin.key_record(created["id"])).HasField("store_bodies")

    status, refused = await admin.call("PATCH", f"/admin/keys/{created['id']}", {"store_bodies": "yes"})
    assert status == 400 and refused["error"]["param"] == "store_bodies"


async def test_list_is_paged_with_a_total_and_filters_by_team(admin: AdminClient) -> None:
    team = await admin.ok("POST", "/admin/teams", {"name": "paging"}, status=201)
    ids = [
        (await admin.ok("POST", "/admin/keys", {"name": f"k{i}", "team_id": team["id"]}, status=201))["id"]
        for i in range(5)
    ]
    first = await admin.ok("GET", "/admin/keys", query={"team_id": team["id"], "per_page": "2"})
    assert (first["object"], first["page"], first["per_page"], first["total"], first["has_more"]) == (
        "list",
        1,
        2,
        5,
        True,
    )
    pages = [first["data"]]
    for page in ("2", "3"):
        pages.append(
            (await admin.ok("GET", "/admin/keys", query={"team_id": team["id"], "per_page": "2", "page": page}))["data"]
        )
    assert [k["id"] for p in pages for k in p] == ids  # creation order, each once
    last = await admin.ok("GET", "/admin/keys", query={"team_id": team["id"], "per_page": "2", "page": "3"})
    assert len(last["data"]) == 1 and last["has_more"] is False
    assert all("key" not in k for p in pages for k in p)
    everything = await admin.ok("GET", "/admin/keys")
    assert everything["per_page"] == 20 and everything["total"] >= 5


@pytest.mark.parametrize(
    ("query", "param"),
    [({"per_page": "101"}, "per_page"), ({"page": "0"}, "page"), ({"page": "x"}, "page"), ({"sort": "name"}, "sort")],
)
async def test_bad_paging_is_a_400_naming_the_parameter(admin: AdminClient, query: dict[str, str], param: str) -> None:
    status, body = await admin.call("GET", "/admin/keys", query=query)
    assert status == 400 and body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


async def test_patch_changes_fields_clears_a_limit_with_null_and_republishes(admin: AdminClient) -> None:
    created = await admin.ok("POST", "/admin/keys", {"name": "p", "rpm": 10, "monthly_budget_usd": 100}, status=201)
    key_id = created["id"]
    before = await admin.key_record(key_id)
    patched = await admin.ok(
        "PATCH", f"/admin/keys/{key_id}", {"rpm": None, "tpm": 5000, "name": "renamed", "owner": "u1"}
    )
    assert (patched["rpm"], patched["tpm"], patched["name"], patched["owner"]) == (None, 5000, "renamed", "u1")
    assert patched["monthly_budget_usd"] == 100.0  # untouched
    assert patched["updated_at"] > created["updated_at"]
    record = await admin.key_record(key_id)
    assert not record.limits.HasField("rpm") and record.limits.tpm == 5000 and record.name == "renamed"
    assert record.updated_at_ms > before.updated_at_ms
    assert record.digest == before.digest  # the secret is not patchable
    assert (await admin.ok("GET", f"/admin/keys/{key_id}")) == patched


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"key": "sk-mr-mine"}, "key"),
        ({"digest": "00"}, "digest"),
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"role": "admin"}, "role"),
        ({"max_parallel": -1}, "max_parallel"),
    ],
)
async def test_patch_refuses_the_secret_and_bad_values(admin: AdminClient, body: dict[str, Any], param: str) -> None:
    created = await admin.ok("POST", "/admin/keys", {"name": "x"}, status=201)
    status, answer = await admin.call("PATCH", f"/admin/keys/{created['id']}", body)
    assert status == 400 and answer["error"]["param"] == param, answer
    assert (await admin.ok("GET", f"/admin/keys/{created['id']}")) == {k: v for k, v in created.items() if k != "key"}


async def test_delete_revokes_and_the_key_stays_visible_as_revoked(admin: AdminClient) -> None:
    created = await admin.ok("POST", "/admin/keys", {"name": "doomed"}, status=201)
    revoked = await admin.ok("DELETE", f"/admin/keys/{created['id']}")
    assert ISO_UTC.match(revoked["revoked_at"])
    assert (await admin.ok("GET", f"/admin/keys/{created['id']}"))["revoked_at"] == revoked["revoked_at"]
    again = await admin.ok("DELETE", f"/admin/keys/{created['id']}")
    assert again["revoked_at"] == revoked["revoked_at"]  # revoking twice keeps the first time
    record = await admin.key_record(created["id"])
    assert record.revoked_at_ms > 0  # stays in the bucket: the gateway answers "revoked"
    status, body = await admin.call("POST", f"/admin/keys/{created['id']}/rotate", {})
    assert status == 409 and body["error"]["code"] == "conflict"


async def test_rotate_gives_a_new_secret_and_keeps_the_old_one_for_the_grace_period(admin: AdminClient) -> None:
    created = await admin.ok("POST", "/admin/keys", {"name": "rotating"}, status=201)
    old_secret, key_id = created["key"], created["id"]
    started_ms = int(time.time() * 1000)
    rotated = await admin.ok("POST", f"/admin/keys/{key_id}/rotate", {"grace_period_s": 600})
    new_secret = rotated.pop("key")
    assert new_secret != old_secret and rotated["display"] == f"sk-mr-…{new_secret[-4:]}"
    assert set(rotated) == KEY_FIELDS
    record = await admin.key_record(key_id)
    assert record.digest == _sha256(new_secret)
    assert [p.digest for p in record.previous] == [_sha256(old_secret)]
    assert started_ms + 600_000 <= record.previous[0].valid_until_ms <= int(time.time() * 1000) + 600_000
    assert (await _stored(admin, key_id))["digest"] == _sha256(new_secret)

    # Without a grace period the old secret is not kept; the earlier one's grace still runs.
    third = await admin.ok("POST", f"/admin/keys/{key_id}/rotate")
    record = await admin.key_record(key_id)
    assert record.digest == _sha256(third["key"])
    assert [p.digest for p in record.previous] == [_sha256(old_secret)]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "a", "colour": "red"}, "colour"),
        ({"name": "a", "rpm": -1}, "rpm"),
        ({"name": "a", "rpm": 1.5}, "rpm"),
        ({"name": "a", "tpm": "100"}, "tpm"),
        ({"name": "a", "max_parallel": True}, "max_parallel"),
        ({"name": "a", "rpm": 2**32}, "rpm"),
        ({"name": "a", "daily_budget_usd": -0.01}, "daily_budget_usd"),
        ({"name": "a", "monthly_budget_usd": "5"}, "monthly_budget_usd"),
        ({"name": "a", "role": "root"}, "role"),
        ({"name": "a", "expires_at": "next tuesday"}, "expires_at"),
        ({"name": "a", "expires_at": 1700000000}, "expires_at"),
        ({"name": "a", "models": "gpt-4o"}, "models"),
        ({"name": "a", "metadata": ["x"]}, "metadata"),
    ],
)
async def test_validation_errors_are_400s_naming_the_field(
    admin: AdminClient, body: dict[str, Any], param: str
) -> None:
    status, answer = await admin.call("POST", "/admin/keys", body)
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]


async def test_a_body_that_is_not_an_object_is_a_400(admin: AdminClient) -> None:
    for body in (None, [], "name"):
        status, answer = await admin.call("POST", "/admin/keys", body)
        assert status == 400 and "JSON object" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/keys/key_0000000000000000"),
        ("PATCH", "/admin/keys/key_0000000000000000"),
        ("DELETE", "/admin/keys/key_0000000000000000"),
        ("POST", "/admin/keys/key_0000000000000000/rotate"),
    ],
)
async def test_an_unknown_key_is_a_404(admin: AdminClient, method: str, path: str) -> None:
    status, answer = await admin.call(method, path, {"name": "x"} if method == "PATCH" else None)
    assert status == 404 and answer["error"]["code"] == "key_not_found", answer


async def test_an_unknown_team_id_is_a_404_naming_team_id(admin: AdminClient) -> None:
    status, answer = await admin.call("POST", "/admin/keys", {"name": "x", "team_id": "team_0000000000000000"})
    assert status == 404 and answer["error"]["param"] == "team_id" and "team_id" in answer["error"]["message"]
    created = await admin.ok("POST", "/admin/keys", {"name": "y"}, status=201)
    status, answer = await admin.call("PATCH", f"/admin/keys/{created['id']}", {"team_id": "team_0000000000000000"})
    assert status == 404 and answer["error"]["param"] == "team_id"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/nothing"), ("PUT", "/admin/keys"), ("POST", "/admin/keys/a/b/c"), ("GET", "/admin/keys/x/rotate")],
)
async def test_other_endpoints_are_404s(admin: AdminClient, method: str, path: str) -> None:
    status, answer = await admin.call(method, path)
    assert status == 404 and answer["error"]["type"] == "invalid_request_error"


async def test_a_watcher_sees_each_change_within_a_second(admin: AdminClient) -> None:
    """What every gateway replica does: watch the bucket and apply each change as it comes."""
    created = await admin.ok("POST", "/admin/keys", {"name": "watched"}, status=201)
    watcher = await admin.kv.watch(f"key.{created['id']}")
    seen: list[keys_pb2.KeyRecord] = []

    async def collect() -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                seen.append(keys_pb2.KeyRecord.FromString(entry.value))

    collecting = asyncio.create_task(collect())
    try:
        await eventually(lambda: _true(bool(seen)), what="the current record")
        await admin.ok("PATCH", f"/admin/keys/{created['id']}", {"rpm": 7})
        took = await eventually(lambda: _true(seen[-1].limits.rpm == 7), timeout=1.0, what="the patched record")
        assert took < 1.0
        await admin.ok("DELETE", f"/admin/keys/{created['id']}")
        await eventually(lambda: _true(seen[-1].revoked_at_ms > 0), timeout=1.0, what="the revocation")
    finally:
        collecting.cancel()
        await watcher.stop()


async def _true(value: bool) -> bool:
    return value
