"""The OpenAPI document's part for the analytics API (seed 003) and ``/user/stats`` (seed 004): the
shapes accounting answers with, as pydantic models for the document only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from common.analytics import MAX_DAYS, MAX_PER_PAGE, MAX_SEARCH_CHARS
from gateway.openapi_operations import Operation

Status = Literal["success", "error", "cancelled"]


class ProviderUsage(BaseModel):
    provider: str | None = Field(description="null: requests that ended before a deployment was chosen.")
    requests: int
    cost_usd: float


class AnalyticsModelUsage(BaseModel):
    model: str
    requests: int
    cost_usd: float


class DailyUsage(BaseModel):
    date: date
    requests: int
    cost_usd: float


class UsageSummary(BaseModel):
    total_requests: int
    total_cost_usd: float
    avg_latency_ms: float | None = Field(description="null when there were no requests.")
    success_rate: float | None = Field(description="0..1; null when there were no requests.")
    by_provider: list[ProviderUsage]
    by_model: list[AnalyticsModelUsage]
    daily_stats: list[DailyUsage] = Field(description="Days with requests, oldest first (UTC).")


class RequestSummary(BaseModel):
    id: str
    created_at: datetime
    model: str
    provider: str | None
    prompt_preview: str | None = Field(description="The prompt's first 100 characters; null unless bodies are kept.")
    input_tokens: int
    output_tokens: int
    total_cost_usd: float
    latency_ms: float
    status: Status


class RequestPage(BaseModel):
    requests: list[RequestSummary]
    total: int
    page: int
    per_page: int
    total_pages: int


class RequestDetail(BaseModel):
    id: str
    created_at: datetime
    completed_at: datetime
    model: str
    provider: str | None
    prompt_text: str | None = Field(description="Kept with `store_bodies`; a cut is marked `… [truncated: N bytes]`.")
    response_text: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_cost_usd: float | None
    output_cost_usd: float | None
    total_cost_usd: float
    latency_ms: float
    status: Status
    error_message: str | None


class AnalyticsModel(BaseModel):
    id: int
    model_id: str
    display_name: str
    provider: str
    input_price_per_1m_tokens: float | None = Field(description="USD; null when this gateway's config has no price.")
    output_price_per_1m_tokens: float | None
    context_window: int | None
    is_active: bool


class AnalyticsModels(RootModel[list[AnalyticsModel]]):
    pass


class Period(BaseModel):
    requests: int
    tokens: int
    cost_usd: float


class Budget(BaseModel):
    budget_usd: float
    spent_usd: float
    remaining_usd: float


class Budgets(BaseModel):
    daily: Budget | None
    monthly: Budget | None


class OwnBudgets(BaseModel):
    key: Budgets
    team: Budgets | None


class TopModel(BaseModel):
    model: str
    requests: int
    tokens: int
    cost_usd: float


class UserStats(BaseModel):
    key_id: str
    team_id: str | None
    today: Period
    this_month: Period = Field(description="The UTC calendar month so far.")
    budgets: OwnBudgets
    top_models: list[TopModel] = Field(description="This month's, most requests first (up to 5).")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_FILTERS = (
    _query("key_id", {"type": "string"}, "The master key only: one key's rows."),
    _query("team_id", {"type": "string"}, "The master key only: one team's rows."),
)
_SCOPE = "A key sees its own requests; the master key sees every key's. Answered by accounting from Postgres."


def operations() -> list[Operation]:
    tag = "Analytics"
    return [
        Operation(
            "get",
            "/v1/analytics/usage",
            "analyticsUsage",
            "Requests, cost, latency and success rate over the last days",
            tag,
            UsageSummary,
            errors=(400, 401, 403, 503),
            description=_SCOPE,
            parameters=(
                _query("days", {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 30}, "UTC days."),
                *_FILTERS,
            ),
        ),
        Operation(
            "get",
            "/v1/analytics/requests",
            "analyticsRequests",
            "Requests, newest first, filtered and searched",
            tag,
            RequestPage,
            errors=(400, 401, 403, 503),
            description=_SCOPE,
            parameters=(
                _query("page", {"type": "integer", "minimum": 1, "default": 1}, ""),
                _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 20}, ""),
                _query("model", {"type": "string"}, "The model asked for."),
                _query("status", {"type": "string", "enum": ["success", "error", "cancelled"]}, ""),
                _query("search", {"type": "string", "maxLength": MAX_SEARCH_CHARS}, "In the prompt text."),
                _query("start_date", {"type": "string", "format": "date-time"}, "ISO 8601."),
                _query("end_date", {"type": "string", "format": "date-time"}, "ISO 8601."),
                *_FILTERS,
            ),
        ),
        Operation(
            "get",
            "/v1/analytics/requests/{request_id}",
            "analyticsRequest",
            "One request in full",
            tag,
            RequestDetail,
            errors=(401, 404, 503),
            notes={404: "No request with this id is the caller's."},
            description=_SCOPE,
            parameters=({"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}},),
        ),
        Operation(
            "get",
            "/v1/analytics/models",
            "analyticsModels",
            "The models with their prices",
            tag,
            AnalyticsModels,
            errors=(401, 503),
        ),
        Operation(
            "get",
            "/user/stats",
            "userStats",
            "The caller's usage today and this month, budgets and top models",
            tag,
            UserStats,
            errors=(400, 401, 503),
        ),
    ]
