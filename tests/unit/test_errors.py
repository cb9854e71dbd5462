from __future__ import annotations

import grpc
import pytest

from common import errors


@pytest.mark.parametrize(
    ("status", "cls", "retryable", "http"),
    [
        (400, errors.UpstreamBadRequestError, False, 400),
        (401, errors.UpstreamError, False, 502),
        (403, errors.UpstreamError, False, 502),
        (404, errors.UpstreamBadRequestError, False, 400),
        (408, errors.UpstreamTimeoutError, True, 504),
        (429, errors.UpstreamRateLimitError, True, 429),
        (500, errors.UpstreamError, True, 502),
        (502, errors.UpstreamError, True, 502),
        (503, errors.UpstreamUnavailableError, True, 503),
        (529, errors.UpstreamUnavailableError, True, 503),
        (504, errors.UpstreamTimeoutError, True, 504),
    ],
)
def test_upstream_status_classification(status: int, cls: type, retryable: bool, http: int) -> None:
    err = errors.error_for_upstream_status(status)("boom", upstream_status=status)
    assert isinstance(err, cls)
    assert err.retryable is retryable
    assert err.status == http
    assert err.upstream_status == status


def test_error_shape_is_openais() -> None:
    err = errors.InvalidRequestError("Missing required parameter: 'messages'.", param="messages")
    assert err.to_dict() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert errors.RateLimitError("slow down", retry_after_s=0.2).headers() == {"Retry-After": "1"}
    assert errors.RateLimitError("slow down", retry_after_s=12.6).headers() == {"Retry-After": "13"}
    assert errors.InvalidRequestError("x").headers() == {}


def test_every_error_has_a_grpc_status_and_http_status() -> None:
    seen = [errors.ModelRouterError, *errors.ModelRouterError.__subclasses__()]
    for cls in seen:
        assert isinstance(cls.grpc_code, grpc.StatusCode)
        assert 400 <= cls.status < 600


def test_error_crossing_nats_keeps_its_class_by_status() -> None:
    assert errors.upstream_error_class(504) is errors.UpstreamTimeoutError
    assert errors.upstream_error_class(429) is errors.UpstreamRateLimitError
    assert errors.upstream_error_class(502) is errors.UpstreamError
    flipped = errors.upstream_error_class(502)("x", retryable=False)
    assert flipped.retryable is False
    assert errors.UpstreamError("y").retryable is True
