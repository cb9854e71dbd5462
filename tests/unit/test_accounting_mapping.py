from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounting.mapping import MalformedEventError, row_from_event, row_from_message
from accounting.models import UsageRecord
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

STARTED_MS = 1_760_000_000_123
FINISHED_MS = 1_760_000_001_456


def _event(**overrides: object) -> events_pb2.UsageEvent:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "key_id": "key_0123456789abcdef",
        "endpoint": "/v1/chat/completions",
        "requested_model": "gpt-demo",
        "provider": "fake",
        "upstream_model": "fake-large",
        "deployment_id": "fake-1",
        "status": events_pb2.REQUEST_STATUS_SUCCESS,
        "http_status": 200,
        "usage": events_pb2.Usage(prompt_tokens=1200, completion_tokens=345, total_tokens=1545, cached_tokens=200),
        "price": router_pb2.Price(prompt_per_1k=0.0015, completion_per_1k=0.002),
        "stream": True,
        "attempts": 2,
        "latency_ms": 812.5,
        "ttft_ms": 95.25,
        "started_at_unix_ms": STARTED_MS,
        "finished_at_unix_ms": FINISHED_MS,
    }
    fields.update(overrides)
    return events_pb2.UsageEvent(**fields)  # type: ignore[arg-type]


def test_every_field_is_mapped() -> None:
    row = row_from_message(_event().SerializeToString())
    assert row == {
        "request_id": "req-1",
        "key_id": "key_0123456789abcdef",
        "endpoint": "/v1/chat/completions",
        "requested_model": "gpt-demo",
        "provider": "fake",
        "upstream_model": "fake-large",
        "deployment_id": "fake-1",
        "status": "success",
        "http_status": 200,
        "error_type": None,
        "error_message": None,
        "prompt_tokens": 1200,
        "completion_tokens": 345,
        "total_tokens": 1545,
        "cached_tokens": 200,
        "cost_usd": Decimal("0.00249"),
        "stream": True,
        "attempts": 2,
        "latency_ms": 812.5,
        "ttft_ms": 95.25,
        "started_at": datetime(2025, 10, 9, 8, 53, 20, 123000, tzinfo=UTC),
        "finished_at": datetime(2025, 10, 9, 8, 53, 21, 456000, tzinfo=UTC),
    }
    # Every column but the database's own timestamp is filled from the event.
    assert set(row) == set(UsageRecord.model_fields) - {"recorded_at"}


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        (events_pb2.REQUEST_STATUS_SUCCESS, "success"),
        (events_pb2.REQUEST_STATUS_ERROR, "error"),
        (events_pb2.REQUEST_STATUS_CANCELLED, "cancelled"),
    ],
)
def test_status_names(wire: int, stored: str) -> None:
    assert row_from_event(_event(status=wire))["status"] == stored


def test_unknown_parts_become_null_and_nothing_streamed_means_no_ttft() -> None:
    row = row_from_event(
        _event(
            provider="",
            upstream_model="",
            deployment_id="",
            status=events_pb2.REQUEST_STATUS_ERROR,
            http_status=503,
            error_type="api_error",
            error_message="no healthy target\x00",
            ttft_ms=0.0,
            stream=False,
        )
    )
    assert (row["provider"], row["upstream_model"], row["deployment_id"]) == (None, None, None)
    assert row["ttft_ms"] is None
    assert (row["error_type"], row["error_message"]) == ("api_error", "no healthy target")


@pytest.mark.parametrize(
    "event",
    [
        _event(request_id=""),
        _event(status=events_pb2.REQUEST_STATUS_UNSPECIFIED),
        _event(price=router_pb2.Price(prompt_per_1k=float("nan"))),
        _event(started_at_unix_ms=2**62),
    ],
    ids=["no-request-id", "no-status", "nan-price", "timestamp-out-of-range"],
)
def test_events_that_cannot_be_rows_are_malformed(event: events_pb2.UsageEvent) -> None:
    with pytest.raises(MalformedEventError):
        row_from_event(event)


@pytest.mark.parametrize("data", [b"\x0a\xff\x01", b"\xff\xff\xff\xff", b'{"request_id": "x"}'])
def test_bytes_that_are_not_a_usage_event_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEventError):
        row_from_message(data)
