"""How a key's refusal reads and travels: OpenAI's messages, RouteError's code and limit states, and
the reservation's price across a model's deployments."""

from __future__ import annotations

import grpc
import yaml

from common.config import parse_config
from common.errors import DatabaseUnavailableError, NoHealthyTargetError
from common.pricing import max_cost_nano_usd
from modelrouter.router.v1 import router_pb2
from router.grpc_errors import route_error
from router.limits.admission import _max_cost
from router.limits.refusals import budget_exceeded, rate_limited, usd
from router.selection import Catalog


def test_usd_is_as_exact_as_the_amount() -> None:
    assert [usd(n) for n in (5_000_000_000, 4_985_000_000, 1_234, 0, 30_000_000)] == [
        "$5.00",
        "$4.985",
        "$0.000001234",
        "$0.00",
        "$0.03",
    ]


def test_rate_refusal_message_and_retry() -> None:
    error = rate_limited("key key_abc", 1, 100, 100, 1, 1_150)
    assert error.message == (
        "Rate limit reached for key key_abc (requests per minute): limit 100, used 100, requested 1. "
        "Please try again in 1.2s."
    )
    assert (error.status, error.code, error.retry_after_s) == (429, "rate_limit_exceeded", 1.2)


def test_budget_refusal_message() -> None:
    error = budget_exceeded("key key_abc", 1, 5 * 10**9, 4_980_000_000, 30_000_000, 40_000_000, 1_796_688_000_000)
    assert error.message == (
        "Budget exceeded for key key_abc: daily budget $5.00, spent $4.98 (+$0.03 reserved by requests in flight); "
        "this request may cost up to $0.04. It resets at 2026-12-08T00:00:00Z."
    )
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    assert error.headers() == {"x-should-retry": "false"}


def test_route_error_carries_code_and_the_keys_limit_states() -> None:
    error = rate_limited("team t_x", 2, 1000, 990, 50, 30_000)
    error.tokens = router_pb2.LimitState(limit=1000, remaining=10, reset_ms=90_000)
    answer = route_error(error)
    assert (answer.grpc_code, answer.code, answer.retry_after_s) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
        "rate_limit_exceeded",
        30,
    )
    assert not answer.HasField("requests") and answer.tokens.remaining == 10
    assert route_error(DatabaseUnavailableError("ledger down")).code == "database_unavailable"
    assert route_error(NoHealthyTargetError("none")).grpc_code == grpc.StatusCode.UNAVAILABLE.value[0]


def test_reservation_takes_the_dearest_deployments_price() -> None:
    def candidates(*prices: tuple[float, float]) -> list:  # type: ignore[type-arg]
        config = {
            "providers": {"p": {"adapter": "fake"}},
            "deployments": [
                {"id": f"d{i}", "model": "m", "provider": "p", "price": {"prompt_per_1k": p, "completion_per_1k": c}}
                for i, (p, c) in enumerate(prices)
            ],
        }
        return Catalog.from_config(parse_config(yaml.safe_dump(config))).candidates("m")

    assert _max_cost(candidates((0.001, 0.002), (0.003, 0.004)), 1000, 500) == max_cost_nano_usd(
        1000, 500, 0.003, 0.004
    )
    # No single dearest: each is priced, the highest wins.
    mixed = candidates((0.010, 0.001), (0.001, 0.010))
    assert _max_cost(mixed, 100, 1000) == max_cost_nano_usd(100, 1000, 0.001, 0.010)
    assert _max_cost(mixed, 1000, 100) == max_cost_nano_usd(1000, 100, 0.010, 0.001)
