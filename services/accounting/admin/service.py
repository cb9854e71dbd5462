"""The admin API over NATS: one request envelope in, one answer envelope out (``subjects.ADMIN``).

Request: JSON ``{"method", "path", "query", "body"}`` as the gateway received it (``path`` starts
with ``/admin/``, ``query`` maps names to strings, ``body`` is the parsed JSON or null). Answer:
JSON ``{"status": <HTTP status>, "body": <JSON>}``, errors in OpenAI's shape (common.errors).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson

from accounting.admin import keys, teams
from accounting.admin.context import AdminContext, Answer
from accounting.admin.key_metrics import key_metrics
from common.errors import InvalidRequestError, ModelRouterError, NotFoundError

log = logging.getLogger(__name__)
# Ids as this service makes them; anything else in a path is not repeated in the log (it could be a
# secret pasted where an id belongs).
_OUR_ID = re.compile(r"^(key|team)_[0-9a-f]{16}$")
_WORDS = {"admin", "keys", "teams", "rotate", "usage"}


@dataclass(frozen=True)
class AdminRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any

    @property
    def parts(self) -> list[str]:
        return [part for part in self.path.split("?")[0].split("/") if part]

    def loggable_path(self) -> str:
        return "/" + "/".join(p if p in _WORDS or _OUR_ID.match(p) else "…" for p in self.parts)


def parse_envelope(data: bytes) -> AdminRequest:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the admin request is not JSON") from None
    if not isinstance(raw, dict):
        raise InvalidRequestError("the admin request must be a JSON object")
    method, path, query = raw.get("method"), raw.get("path"), raw.get("query") or {}
    if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/admin/"):
        raise InvalidRequestError("the admin request needs a method and a path starting with /admin/")
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise InvalidRequestError("the admin request's query must map names to strings")
    return AdminRequest(method.upper(), path, {str(k): v for k, v in query.items()}, raw.get("body"))


async def route(ctx: AdminContext, request: AdminRequest) -> Answer:
    """The endpoint for ``request``; 404 for any other method and path (rotate is for keys only)."""
    q, body = request.query, request.body
    match (request.method, request.parts):
        case ("POST", ["admin", "keys"]):
            return await keys.create_key(ctx, body)
        case ("GET", ["admin", "keys"]):
            return await keys.list_keys(ctx, q)
        case ("GET", ["admin", "keys", key_id]):
            return await keys.get_key(ctx, key_id)
        case ("PATCH", ["admin", "keys", key_id]):
            return await keys.patch_key(ctx, key_id, body)
        case ("DELETE", ["admin", "keys", key_id]):
            return await keys.revoke_key(ctx, key_id)
        case ("POST", ["admin", "keys", key_id, "rotate"]):
            return await keys.rotate_key(ctx, key_id, body)
        case ("POST", ["admin", "teams"]):
            return await teams.create_team(ctx, body)
        case ("GET", ["admin", "teams"]):
            return await teams.list_teams(ctx, q)
        case ("GET", ["admin", "teams", team_id]):
            return await teams.get_team(ctx, team_id)
        case ("PATCH", ["admin", "teams", team_id]):
            return await teams.patch_team(ctx, team_id, body)
        case ("DELETE", ["admin", "teams", team_id]):
            return await teams.delete_team(ctx, team_id)
        case ("GET", ["admin", "usage", "keys"]):  # the gateway's GET /auth/metrics
            return await key_metrics(ctx)
    raise NotFoundError(f"no admin endpoint {request.method} {request.loggable_path()}", code="not_found")


class AdminService:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def answer(self, data: bytes) -> bytes:
        """The answer envelope for one request envelope; never raises."""
        request: AdminRequest | None = None
        try:
            request = parse_envelope(data)
            answer = await route(self._ctx, request)
        except ModelRouterError as exc:
            where = f"{request.method} {request.loggable_path()}" if request else "malformed request"
            log.info("admin %s -> %d %s", where, exc.status, exc.code or exc.type)
            answer = Answer(exc.status, exc.to_dict())
        except Exception:
            log.exception("admin request failed")
            answer = Answer(500, ModelRouterError("the admin request failed inside accounting").to_dict())
        return orjson.dumps({"status": answer.status, "body": answer.body})
