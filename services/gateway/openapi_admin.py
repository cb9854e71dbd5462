"""The OpenAPI document's part for the admin API (``/admin/keys``, ``/admin/teams``) and seed 001's
auth endpoints (``/auth/*``): the shapes accounting answers with, as pydantic models for the
document only (accounting validates the requests itself)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.openapi_operations import Operation

_FORBID = ConfigDict(extra="forbid")


class _Limits(BaseModel):
    rpm: int | None = Field(default=None, ge=0, description="Requests per minute (sliding window).")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute: prompt estimate + max output.")
    max_parallel: int | None = Field(default=None, ge=0, description="Requests in flight at once.")
    daily_budget_usd: float | None = Field(default=None, ge=0, description="USD per UTC calendar day.")
    monthly_budget_usd: float | None = Field(default=None, ge=0, description="USD per UTC calendar month.")


class KeyCreate(_Limits):
    model_config = _FORBID
    name: str = Field(min_length=1)
    team_id: str | None = None
    owner: str | None = Field(default=None, description="A user id or an e-mail address.")
    role: Literal["client", "ops"] = "client"
    models: list[str] = Field(default_factory=list, description="Public model names it may use; empty: all.")
    expires_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    store_bodies: bool | None = Field(
        default=None, description="Keep its prompts' and answers' texts (null: the deployment's `store_bodies`)."
    )


class KeyUpdate(_Limits):
    """Any field of ``KeyCreate``; ``null`` clears a limit or a budget."""

    model_config = _FORBID
    name: str | None = Field(default=None, min_length=1)
    team_id: str | None = None
    owner: str | None = None
    role: Literal["client", "ops"] | None = None
    models: list[str] | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    store_bodies: bool | None = None


class KeyRotate(BaseModel):
    model_config = _FORBID
    grace_period_s: int = Field(default=0, ge=0, description="How long the old secret stays valid.")


class ApiKey(_Limits):
    id: str = Field(examples=["key_3f9a0c1d2e4b5a69"])
    object: Literal["api_key"]
    name: str
    team_id: str | None
    owner: str | None
    role: Literal["client", "ops"]
    models: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    metadata: dict[str, Any] | None
    store_bodies: bool | None = Field(description="Its own choice; null: the deployment's `store_bodies`.")
    display: str = Field(examples=["sk-mr-…abcd"], description="The secret's masked form.")
    created_at: datetime
    updated_at: datetime


class ApiKeyWithSecret(ApiKey):
    key: str = Field(description="The secret: shown this once, never stored (only its SHA-256 digest).")


class ApiKeyList(BaseModel):
    object: Literal["list"]
    data: list[ApiKey]
    total: int
    page: int
    per_page: int


class TeamCreate(_Limits):
    model_config = _FORBID
    name: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None


class TeamUpdate(_Limits):
    model_config = _FORBID
    name: str | None = Field(default=None, min_length=1)
    metadata: dict[str, Any] | None = None


class TeamMember(BaseModel):
    id: str
    name: str


class Team(_Limits):
    id: str
    object: Literal["team"]
    name: str
    metadata: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    keys: list[TeamMember] | None = Field(default=None, description="Its keys (on GET of one team).")


class TeamList(BaseModel):
    object: Literal["list"]
    data: list[Team]
    total: int
    page: int
    per_page: int


class AuthStatus(BaseModel):
    auth_enabled: bool
    keys: int = Field(description="Keys this gateway accepts (the operator's and the admin API's).")
    managed_keys: int
    teams: int
    key_id: str
    key: str | None = Field(description="The caller's key, masked.")
    role: Literal["client", "ops", "master"]
    team_id: str | None


class KeyMetrics(BaseModel):
    key_id: str
    key: str | None = Field(description="Masked, when this gateway knows the key.")
    requests: int
    successes: int
    failures: int
    last_used: datetime | None


class AuthMetrics(BaseModel):
    object: Literal["list"]
    keys: list[KeyMetrics]


class Reloaded(BaseModel):
    reloaded: bool
    keys: int
    managed_keys: int


def _id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": what}


_PAGING = (
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
)
_WRITE_ERRORS = (400, 401, 403, 404, 503)
_MASTER = (
    "The master key (`MODELROUTER_MASTER_KEY`) only. Accounting answers it from Postgres; with Postgres down, 503."
)
_KEY = _id("key_id", "The key's id (never its secret).")
_TEAM = _id("team_id", "The team's id.")


def _admin(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    tag: str,
    answer: type[BaseModel],
    *,
    body: type[BaseModel] | None = None,
    ok_status: int = 200,
    query: tuple[dict[str, Any], ...] = (),
) -> Operation:
    """An admin operation: master key only; a body can be refused (400) or name a missing team (404),
    an id in the path a missing record (404)."""
    ids = tuple(param for name, param in (("{key_id}", _KEY), ("{team_id}", _TEAM)) if name in path)
    errors = _WRITE_ERRORS if body is not None else (401, 403, 404, 503) if ids else (401, 403, 503)
    return Operation(
        method,
        path,
        operation_id,
        summary,
        tag,
        answer,
        body=body,
        errors=errors,
        ok_status=ok_status,
        description=_MASTER,
        parameters=(*query, *ids),
    )


def operations() -> list[Operation]:
    key, team = "Admin: keys", "Admin: teams"
    team_filter = {"name": "team_id", "in": "query", "schema": {"type": "string"}}
    return [
        _admin(
            "post",
            "/admin/keys",
            "createKey",
            "Create a key (its secret is in this answer only)",
            key,
            ApiKeyWithSecret,
            body=KeyCreate,
            ok_status=201,
        ),
        _admin("get", "/admin/keys", "listKeys", "List keys", key, ApiKeyList, query=(*_PAGING, team_filter)),
        _admin("get", "/admin/keys/{key_id}", "getKey", "Get a key", key, ApiKey),
        _admin(
            "patch",
            "/admin/keys/{key_id}",
            "updateKey",
            "Change a key's name, limits, budgets, models…",
            key,
            ApiKey,
            body=KeyUpdate,
        ),
        _admin(
            "delete",
            "/admin/keys/{key_id}",
            "revokeKey",
            "Revoke a key (every gateway refuses it within 1 s)",
            key,
            ApiKey,
        ),
        _admin(
            "post",
            "/admin/keys/{key_id}/rotate",
            "rotateKey",
            "Give a key a new secret",
            key,
            ApiKeyWithSecret,
            body=KeyRotate,
        ),
        _admin("post", "/admin/teams", "createTeam", "Create a team", team, Team, body=TeamCreate, ok_status=201),
        _admin("get", "/admin/teams", "listTeams", "List teams", team, TeamList, query=_PAGING),
        _admin("get", "/admin/teams/{team_id}", "getTeam", "Get a team and its keys", team, Team),
        _admin(
            "patch",
            "/admin/teams/{team_id}",
            "updateTeam",
            "Change a team's name, limits or budgets",
            team,
            Team,
            body=TeamUpdate,
        ),
        _admin("delete", "/admin/teams/{team_id}", "deleteTeam", "Delete a team", team, Team),
        Operation(
            "get",
            "/auth/status",
            "authStatus",
            "Who the caller is, and whether auth is on",
            "Auth",
            AuthStatus,
            errors=(401,),
        ),
        Operation(
            "get",
            "/auth/metrics",
            "authMetrics",
            "Per key, masked: requests, successes, failures, last use",
            "Auth",
            AuthMetrics,
            errors=(401, 403, 503),
            description="An ops key or the master key.",
        ),
        Operation(
            "post",
            "/auth/reload-keys",
            "reloadKeys",
            "Re-read the environment's, the config's and the database's keys",
            "Auth",
            Reloaded,
            errors=(401, 403),
            description="An ops key or the master key.",
        ),
    ]
