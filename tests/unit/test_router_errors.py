"""How router errors become gRPC statuses (the integration tests see them over a real channel)."""

from __future__ import annotations

import grpc
import pytest

from common.errors import ModelRouterError, NoHealthyTargetError, NotFoundError, RateLimitError
from router.grpc_errors import grpc_status


def test_not_found_maps_to_not_found_without_metadata() -> None:
    assert grpc_status(NotFoundError("The model `x` does not exist")) == (
        grpc.StatusCode.NOT_FOUND,
        "The model `x` does not exist",
        (),
    )


def test_no_healthy_target_maps_to_unavailable() -> None:
    code, details, trailing = grpc_status(NoHealthyTargetError("all cooling down"))
    assert (code, details, trailing) == (grpc.StatusCode.UNAVAILABLE, "all cooling down", ())


def test_unexpected_router_error_maps_to_internal() -> None:
    code, _, trailing = grpc_status(ModelRouterError("redis went away"))
    assert (code, trailing) == (grpc.StatusCode.INTERNAL, ())


@pytest.mark.parametrize(
    ("retry_after_s", "header"),
    [(0.001, "1"), (0.0, "1"), (1.0, "1"), (1.001, "2"), (29.2, "30"), (90.0, "90")],
)
def test_rate_limit_maps_to_resource_exhausted_with_retry_after_rounded_up(retry_after_s: float, header: str) -> None:
    code, _, trailing = grpc_status(RateLimitError("over limit", retry_after_s=retry_after_s))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing == (("retry-after", header),)
