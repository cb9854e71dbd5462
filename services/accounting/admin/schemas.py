"""What the admin API accepts: pydantic models of the request bodies and query strings, and the
translation of a validation failure into an InvalidRequestError naming the field (``param``).

Bodies are strict (a limit is a JSON integer, a budget a JSON number, never a string or a boolean)
and refuse unknown fields; query strings are strings by nature, so they are parsed leniently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from common.errors import InvalidRequestError

UINT32_MAX = 2**32 - 1  # keys.v1.Limits carries uint32
MAX_BUDGET_USD = 10**9
MAX_GRACE_PERIOD_S = 30 * 24 * 3600
MAX_METADATA_BYTES = 16 * 1024


def _parse_moment(value: Any) -> Any:
    """ISO 8601 text -> an aware datetime (no timezone: UTC); anything else is left to fail."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Name = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
Limit = Annotated[int, Field(strict=True, ge=0, le=UINT32_MAX)]
Budget = Annotated[float, Field(strict=True, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)]
Moment = Annotated[datetime, BeforeValidator(_parse_moment), Field(strict=True)]
Text = Annotated[str, Field(strict=True, min_length=1, max_length=320)]
Metadata = Annotated[dict[str, Any], Field(strict=True)]
# A key's own store_bodies: true or false; null (or absent) follows the deployment's setting.
StoreBodies = Annotated[bool, Field(strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _metadata_small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(orjson.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return value

    def given(self) -> dict[str, Any]:
        """The fields the request named, with their values (an explicit null included)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class _Limits(_Body):
    rpm: Limit | None = None
    tpm: Limit | None = None
    max_parallel: Limit | None = None
    daily_budget_usd: Budget | None = None
    monthly_budget_usd: Budget | None = None


class TeamCreate(_Limits):
    name: Name
    metadata: Metadata = Field(default_factory=dict)


class KeyCreate(TeamCreate):
    team_id: Text | None = None
    owner: Text | None = None
    role: Literal["client", "ops"] = "client"
    models: list[Annotated[str, Field(strict=True, min_length=1)]] = Field(default_factory=list, max_length=1000)
    expires_at: Moment | None = None
    store_bodies: StoreBodies | None = None


# In a PATCH, null clears a limit, a budget, the team, the owner or the expiry; the fields below
# have no "unset" state, so null is refused for them.
_NOT_NULLABLE = ("name", "role", "models", "metadata")


class _Patch(_Body):
    def given(self) -> dict[str, Any]:
        fields = super().given()
        for name in _NOT_NULLABLE:
            if name in fields and fields[name] is None:
                raise InvalidRequestError(f"{name} cannot be null", param=name)
        return fields


class TeamPatch(_Patch, _Limits):
    name: Name | None = None
    metadata: Metadata | None = None


class KeyPatch(_Patch, _Limits):
    name: Name | None = None
    metadata: Metadata | None = None
    team_id: Text | None = None
    owner: Text | None = None
    role: Literal["client", "ops"] | None = None
    models: list[Annotated[str, Field(strict=True, min_length=1)]] | None = Field(default=None, max_length=1000)
    expires_at: Moment | None = None
    store_bodies: StoreBodies | None = None


class Rotate(_Body):
    grace_period_s: Annotated[int, Field(strict=True, ge=0, le=MAX_GRACE_PERIOD_S)] = 0


class Page(BaseModel):
    """``?page=1&per_page=20`` (at most 100)."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class KeyPage(Page):
    team_id: Annotated[str, Field(min_length=1)] | None = None


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: Any, *, optional: bool = False) -> M:
    """``body`` (the parsed JSON) validated as ``model``; InvalidRequestError naming the field."""
    if body is None and optional:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return _validate(model, body)


def parse_query(model: type[M], query: dict[str, str]) -> M:
    return _validate(model, query, unknown="unknown query parameter")


def budget_decimal(value: float | None) -> Decimal | None:
    # Through the shortest text that round-trips, so 0.1 is stored as 0.1 and not 0.1000000000000000055.
    return None if value is None else Decimal(repr(value))


def _validate(model: type[M], data: dict[str, Any], unknown: str = "unknown field") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, unknown) from None


def _invalid(exc: ValidationError, unknown: str) -> InvalidRequestError:
    # The first problem is reported (as OpenAI does); input values are left out of the message.
    error = exc.errors(include_url=False, include_input=False)[0]
    # param is the field itself; the message names the full location (models.2, metadata.x).
    field = str(error["loc"][0]) if error["loc"] else None
    where = ".".join(str(part) for part in error["loc"]) or "body"
    kind = error["type"]
    if kind == "extra_forbidden":
        message = f"{unknown}: {where}"
    elif kind == "missing":
        message = f"{where} is required"
    else:
        message = f"invalid {where}: {_strip_prefix(error['msg'])}"
    return InvalidRequestError(message, param=field)


def _strip_prefix(message: str) -> str:
    # pydantic's "Value error, must not be empty" -> "must not be empty"
    return message.removeprefix("Value error, ")
