"""The analytics API's questions, as the gateway checks them and accounting answers them.

The gateway validates the query string here (a bad value is a 400 naming the parameter, before any
NATS hop) and sends accounting one JSON envelope on ``subjects.ANALYTICS``:
``{"op": "usage" | "requests" | "request" | "user_stats", "scope": {"key_id", "team_id"}, "query"}``.
``scope`` is decided by the gateway from the caller, never taken from the client as it is: a key's
scope is itself; the master key's is everything, narrowed by its own ``key_id`` / ``team_id``
filters. Accounting parses the same models again (it trusts no envelope's shape), and answers
``{"status", "body"}`` like the admin API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from common.errors import InvalidRequestError

MAX_DAYS = 365
MAX_PER_PAGE = 100
MAX_SEARCH_CHARS = 200
# The statuses a usage row can have (seed 003 names success and error; a client that hung up is cancelled).
STATUSES = ("success", "error", "cancelled")
Op = Literal["usage", "requests", "request", "user_stats"]


def _moment(value: Any) -> Any:
    """ISO 8601 (a date alone is its midnight; no zone: UTC) -> an aware datetime."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-12-01T00:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Moment = Annotated[datetime, BeforeValidator(_moment)]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Query):
    """Whose rows: one key's, one team's, both (a key of that team), or (both None) everyone's."""

    key_id: Id | None = None
    team_id: Id | None = None


class UsageQuery(_Query):
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 30
    # The master key's filters (a key's own scope is set by the gateway, not by these).
    key_id: Id | None = None
    team_id: Id | None = None


class RequestsQuery(_Query):
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 20
    model: Id | None = None
    status: Literal["success", "error", "cancelled"] | None = None
    search: Annotated[str, Field(min_length=1, max_length=MAX_SEARCH_CHARS)] | None = None
    start_date: Moment | None = None
    end_date: Moment | None = None
    key_id: Id | None = None
    team_id: Id | None = None

    @model_validator(mode="after")
    def _range(self) -> RequestsQuery:
        if self.start_date is not None and self.end_date is not None and self.end_date < self.start_date:
            raise InvalidRequestError("end_date is before start_date", param="end_date")
        return self

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class RequestQuery(_Query):
    id: Id


class UserStatsQuery(_Query):
    pass


QUERIES: dict[str, type[_Query]] = {
    "usage": UsageQuery,
    "requests": RequestsQuery,
    "request": RequestQuery,
    "user_stats": UserStatsQuery,
}

Q = TypeVar("Q", bound=BaseModel)


def parse(model: type[Q], data: dict[str, Any]) -> Q:
    """``data`` as ``model``; an InvalidRequestError naming the parameter (``param``) if it is not."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        name = str(error["loc"][0]) if error["loc"] else None
        if error["type"] == "extra_forbidden":
            message = f"unknown query parameter: {name}"
        else:
            message = f"invalid {name}: {error['msg'].removeprefix('Value error, ')}"
        raise InvalidRequestError(message, param=name, code="invalid_parameter") from None


def envelope(op: Op, scope: Scope, query: BaseModel) -> dict[str, Any]:
    return {"op": op, "scope": scope.model_dump(), "query": query.model_dump(mode="json")}
