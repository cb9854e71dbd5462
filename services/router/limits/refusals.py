"""What a refused admission tells the client: OpenAI's 429s, with a message that says which limit
of which key or team, how much is used, and when to come back.

Both errors carry the key's rpm/tpm state for the 429's x-ratelimit-* headers (RouteError's
``requests``/``tokens``, ``router.grpc_errors.route_error``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

from common.errors import BudgetExceededError, RateLimitError
from common.pricing import NANO_USD_PER_USD
from modelrouter.router.v1 import router_pb2

# What a rate refusal's "what" (admit.lua) is, in OpenAI's words.
RATE_LIMITS = {1: "requests per minute", 2: "tokens per minute", 3: "parallel requests"}
BUDGETS = {1: "daily", 2: "monthly"}


class CarriesLimitStates:
    """A refusal that knows the key's limits' state after it, for the answer's headers."""

    requests: router_pb2.LimitState | None = None
    tokens: router_pb2.LimitState | None = None


class KeyRateLimitError(CarriesLimitStates, RateLimitError):
    pass


class KeyBudgetExceededError(CarriesLimitStates, BudgetExceededError):
    pass


def rate_limited(subject: str, what: int, limit: int, used: int, requested: int, wait_ms: int) -> KeyRateLimitError:
    """``subject`` is "key <id>" or "team <id>"."""
    # Rounded up to a tenth: a client that waits exactly this long is not refused again.
    wait_s = math.ceil(wait_ms / 100) / 10
    return KeyRateLimitError(
        f"Rate limit reached for {subject} ({RATE_LIMITS[what]}): limit {limit}, used {used}, "
        f"requested {requested}. Please try again in {wait_s:g}s.",
        retry_after_s=wait_s,
    )


def budget_exceeded(
    subject: str, what: int, budget: int, spent: int, reserved: int, cost: int, ends_ms: int
) -> KeyBudgetExceededError:
    in_flight = f" (+{usd(reserved)} reserved by requests in flight)" if reserved > 0 else ""
    resets = datetime.fromtimestamp(ends_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return KeyBudgetExceededError(
        f"Budget exceeded for {subject}: {BUDGETS[what]} budget {usd(budget)}, spent {usd(spent)}{in_flight}; "
        f"this request may cost up to {usd(cost)}. It resets at {resets}."
    )


def usd(nano: int) -> str:
    """Dollars as exact as the amount is: $5.00, $4.985, $0.000001234 (never rounded to a lie)."""
    text = f"{Decimal(nano) / NANO_USD_PER_USD:.9f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"
