"""``GET /user/stats`` (seed 004): the caller's requests, tokens and cost today and this month, its
top models (accounting's rollup), and its budgets with what remains of them. The budgets are the
key's and its team's as this gateway's keyring holds them (DEFAULT_DAILY_BUDGET and
DEFAULT_MONTHLY_BUDGET included); spend is the ledger's, which lags the router's counters by the
requests in flight."""

from __future__ import annotations

from typing import Any

from gateway.keyring import Principal
from modelrouter.keys.v1 import keys_pb2


def _budget(limits: keys_pb2.Limits | None, field: str, spent: float) -> dict[str, Any] | None:
    if limits is None or not limits.HasField(field):
        return None
    budget = float(getattr(limits, field))
    return {"budget_usd": budget, "spent_usd": spent, "remaining_usd": round(max(0.0, budget - spent), 12)}


def budgets(limits: keys_pb2.Limits | None, today_usd: float, month_usd: float) -> dict[str, Any]:
    return {
        "daily": _budget(limits, "daily_budget_usd", today_usd),
        "monthly": _budget(limits, "monthly_budget_usd", month_usd),
    }


def stats_answer(caller: Principal, ledger: dict[str, Any]) -> dict[str, Any]:
    """Accounting's figures (``queries.user_stats``) with the caller's budgets."""
    today, month = ledger["today"], ledger["this_month"]
    team = ledger.get("team")
    return {
        "key_id": caller.key_id,
        "team_id": caller.team_id or None,
        "today": today,
        "this_month": month,
        "budgets": {
            "key": budgets(caller.key_limits, today["cost_usd"], month["cost_usd"]),
            "team": budgets(caller.team_limits, team["cost_usd_today"], team["cost_usd_this_month"])
            if team is not None
            else None,
        },
        "top_models": ledger["top_models"],
    }
