"""The admin API's teams over NATS: create, list, get with its keys, patch, delete (refused while
keys are active), no rotate; and the team records in the keys bucket."""

from __future__ import annotations

import pytest

from common.kv_contents import current_keys
from tests.integration.accounting_admin import AdminClient, admin

pytestmark = pytest.mark.integration
__all__ = ["admin"]

TEAM_FIELDS = {
    "id", "object", "name", "rpm", "tpm", "max_parallel", "daily_budget_usd", "monthly_budget_usd",
    "metadata", "created_at", "updated_at",
}  # fmt: skip


async def test_create_get_and_the_team_record(admin: AdminClient) -> None:
    created = await admin.ok(
        "POST", "/admin/teams", {"name": "research", "tpm": 100_000, "monthly_budget_usd": 250.75}, status=201
    )
    assert set(created) == TEAM_FIELDS | {"keys"} and created["keys"] == []
    assert created["id"].startswith("team_") and created["object"] == "team"
    assert (created["tpm"], created["rpm"], created["monthly_budget_usd"]) == (100_000, None, 250.75)
    record = await admin.team_record(created["id"])
    assert (record.id, record.name) == (created["id"], "research")
    assert record.limits.tpm == 100_000 and record.limits.monthly_budget_usd == 250.75
    assert not record.limits.HasField("rpm") and not record.limits.HasField("daily_budget_usd")

    alive = await admin.ok("POST", "/admin/keys", {"name": "a", "team_id": created["id"]}, status=201)
    gone = await admin.ok("POST", "/admin/keys", {"name": "b", "team_id": created["id"]}, status=201)
    await admin.ok("DELETE", f"/admin/keys/{gone['id']}")
    got = await admin.ok("GET", f"/admin/teams/{created['id']}")
    assert got["keys"] == [{"id": alive["id"], "name": "a"}]  # its keys not revoked
    assert (await admin.key_record(alive["id"])).team_id == created["id"]


async def test_list_is_paged_without_member_keys(admin: AdminClient) -> None:
    for i in range(3):
        await admin.ok("POST", "/admin/teams", {"name": f"t{i}"}, status=201)
    page = await admin.ok("GET", "/admin/teams", query={"per_page": "2"})
    assert page["object"] == "list" and len(page["data"]) == 2 and page["total"] >= 3 and page["has_more"]
    assert all(set(t) == TEAM_FIELDS for t in page["data"])


async def test_patch_clears_a_budget_and_rewrites_only_the_team(admin: AdminClient) -> None:
    team = await admin.ok("POST", "/admin/teams", {"name": "ops", "daily_budget_usd": 10}, status=201)
    key = await admin.ok("POST", "/admin/keys", {"name": "member", "team_id": team["id"]}, status=201)
    key_revision = (await admin.kv.get(f"key.{key['id']}")).revision
    patched = await admin.ok("PATCH", f"/admin/teams/{team['id']}", {"daily_budget_usd": None, "rpm": 3})
    assert (patched["daily_budget_usd"], patched["rpm"]) == (None, 3)
    assert patched["keys"] == [{"id": key["id"], "name": "member"}]
    record = await admin.team_record(team["id"])
    assert not record.limits.HasField("daily_budget_usd") and record.limits.rpm == 3
    assert (await admin.kv.get(f"key.{key['id']}")).revision == key_revision  # keys untouched


async def test_delete_is_refused_while_keys_are_active_then_detaches_revoked_ones(admin: AdminClient) -> None:
    team = await admin.ok("POST", "/admin/teams", {"name": "short-lived"}, status=201)
    key = await admin.ok("POST", "/admin/keys", {"name": "k", "team_id": team["id"]}, status=201)
    status, answer = await admin.call("DELETE", f"/admin/teams/{team['id']}")
    assert status == 409 and answer["error"]["code"] == "team_has_keys", answer
    assert (await admin.ok("GET", f"/admin/teams/{team['id']}"))["id"] == team["id"]

    await admin.ok("DELETE", f"/admin/keys/{key['id']}")
    deleted = await admin.ok("DELETE", f"/admin/teams/{team['id']}")
    assert deleted == {"id": team["id"], "object": "team", "deleted": True}
    status, answer = await admin.call("GET", f"/admin/teams/{team['id']}")
    assert status == 404 and answer["error"]["code"] == "team_not_found"
    assert (await admin.ok("GET", f"/admin/keys/{key['id']}"))["team_id"] is None
    assert (await admin.key_record(key["id"])).team_id == ""
    assert f"team.{team['id']}" not in await current_keys(admin.kv, 10)


async def test_a_key_moves_between_teams(admin: AdminClient) -> None:
    one = await admin.ok("POST", "/admin/teams", {"name": "one"}, status=201)
    two = await admin.ok("POST", "/admin/teams", {"name": "two"}, status=201)
    key = await admin.ok("POST", "/admin/keys", {"name": "mover", "team_id": one["id"]}, status=201)
    moved = await admin.ok("PATCH", f"/admin/keys/{key['id']}", {"team_id": two["id"]})
    assert moved["team_id"] == two["id"] and (await admin.key_record(key["id"])).team_id == two["id"]
    await admin.ok("DELETE", f"/admin/teams/{one['id']}")  # no key left in it
    detached = await admin.ok("PATCH", f"/admin/keys/{key['id']}", {"team_id": None})
    assert detached["team_id"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "t", "team_id": "x"}, "team_id"), ({"name": "t", "tpm": -5}, "tpm"),
     ({"name": "t", "role": "ops"}, "role"), ({"name": "t", "daily_budget_usd": "1"}, "daily_budget_usd")],
)  # fmt: skip
async def test_team_validation_names_the_field(admin: AdminClient, body: dict[str, object], param: str) -> None:
    status, answer = await admin.call("POST", "/admin/teams", body)
    assert status == 400 and answer["error"]["param"] == param, answer


async def test_teams_have_no_rotate_and_unknown_teams_are_404s(admin: AdminClient) -> None:
    team = await admin.ok("POST", "/admin/teams", {"name": "no-secret"}, status=201)
    status, answer = await admin.call("POST", f"/admin/teams/{team['id']}/rotate", {})
    assert status == 404 and answer["error"]["code"] == "not_found"
    for method in ("GET", "PATCH", "DELETE"):
        status, answer = await admin.call(
            method, "/admin/teams/team_0000000000000000", {} if method == "PATCH" else None
        )
        assert status == 404 and answer["error"]["code"] == "team_not_found", (method, answer)
