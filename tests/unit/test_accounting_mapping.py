from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounting.mapping import MalformedEventError, is_batch, row_from_event, row_from_message, rows_from_message
from accounting.models import UsageRecord
from common import subjects
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

STARTED_MS = 1_760_000_000_123
FINISHED_MS = 1_760_000_001_456


def _event(**overrides: object) -> events_pb2.UsageEvent:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "key_id": "key_0123456789abcdef",
        "team_id": "team_00000000c0ffee00",
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
        "team_id": "team_00000000c0ffee00",
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
        "input_cost_usd": Decimal("0.0018"),
        "output_cost_usd": Decimal("0.00069"),
        "price_unknown": False,
        "stream": True,
        "attempts": 2,
        "latency_ms": 812.5,
        "ttft_ms": 95.25,
        "started_at": datetime(2025, 10, 9, 8, 53, 20, 123000, tzinfo=UTC),
        "finished_at": datetime(2025, 10, 9, 8, 53, 21, 456000, tzinfo=UTC),
        "bodies": None,  # the key stores no texts
    }
    # Every column but the database's own timestamp is filled from the event (the texts, when
    # stored, travel beside the columns: the store writes them to usage_bodies).
    assert set(row) == set(UsageRecord.model_fields) - {"recorded_at"} | {"bodies"}


def test_stored_texts_travel_beside_the_columns() -> None:
    row = row_from_event(
        _event(bodies_stored=True, prompt_text="Hello\x00 there", response_text="", prompt_truncated=True)
    )
    assert row["bodies"] == {
        "prompt_text": "Hello there",
        "response_text": "",
        "prompt_truncated": True,
        "response_truncated": False,
    }


def test_cached_prompt_tokens_are_billed_at_the_cached_price_when_the_deployment_has_one() -> None:
    cached = router_pb2.Price(prompt_per_1k=0.0015, completion_per_1k=0.002, cached_prompt_per_1k=0.00075)
    row = row_from_message(_event(price=cached).SerializeToString())
    # 1000 uncached * 0.0015 / 1000 + 200 cached * 0.00075 / 1000 = 0.0015 + 0.00015
    assert (row["input_cost_usd"], row["output_cost_usd"], row["cost_usd"]) == (
        Decimal("0.00165"),
        Decimal("0.00069"),
        Decimal("0.00234"),
    )


def test_an_unknown_price_is_a_null_cost_and_a_flag_never_free() -> None:
    row = row_from_message(_event(price=router_pb2.Price(unknown=True)).SerializeToString())
    assert (row["cost_usd"], row["input_cost_usd"], row["output_cost_usd"], row["price_unknown"]) == (
        None,
        None,
        None,
        True,
    )


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
            team_id="",
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
    assert row["team_id"] is None  # a key without a team: NULL, not ""
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


BATCH = {subjects.USAGE_BATCH_HEADER: "1", subjects.MSG_ID_HEADER: "batch-1"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_message_without_the_batch_header_is_one_event_with_its_context_in_the_headers() -> None:
    for headers in (None, {subjects.MSG_ID_HEADER: "req-1", "traceparent": TRACEPARENT}):
        assert not is_batch(headers)
        [event] = rows_from_message(_event().SerializeToString(), headers)
        assert (event.request_id, event.traceparent, event.error) == ("req-1", "", "")
        assert event.row == row_from_event(_event())


def test_a_single_event_that_cannot_be_a_row_makes_the_whole_message_malformed() -> None:
    with pytest.raises(MalformedEventError):
        rows_from_message(_event(request_id="").SerializeToString(), {subjects.MSG_ID_HEADER: "x"})


def test_a_batch_message_is_its_events_in_order_each_with_its_own_traceparent() -> None:
    other = TRACEPARENT.replace("00f067aa0ba902b7", "1111111111111111")
    batch = events_pb2.UsageBatch(
        events=[_event(request_id="req-a", traceparent=TRACEPARENT), _event(request_id="req-b", traceparent=other)]
    )
    assert is_batch(BATCH)
    found = rows_from_message(batch.SerializeToString(), BATCH)
    assert [(e.request_id, e.traceparent, e.error) for e in found] == [("req-a", TRACEPARENT, ""), ("req-b", other, "")]
    assert found[1].row == row_from_event(_event(request_id="req-b"))


def test_a_bad_event_in_a_batch_is_reported_without_losing_the_others() -> None:
    batch = events_pb2.UsageBatch(
        events=[
            _event(request_id="req-a"),
            _event(request_id="req-nan", price=router_pb2.Price(prompt_per_1k=float("nan"))),
            _event(request_id=""),
            _event(request_id="req-b"),
        ]
    )
    found = rows_from_message(batch.SerializeToString(), BATCH)
    assert [e.request_id for e in found] == ["req-a", "req-nan", "", "req-b"]
    assert [e.row is None for e in found] == [False, True, True, False]
    assert "req-nan" in found[1].error and "no request_id" in found[2].error


def test_an_empty_batch_has_no_events() -> None:
    assert rows_from_message(events_pb2.UsageBatch().SerializeToString(), BATCH) == []


@pytest.mark.parametrize("data", [b"\xff\xff not a protobuf", b"\x0a\x03abc"])
def test_a_batch_payload_that_does_not_decode_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEventError, match="not a UsageBatch"):
        rows_from_message(data, BATCH)


def test_only_the_value_1_marks_a_batch() -> None:
    assert not is_batch({subjects.USAGE_BATCH_HEADER: "0"})
    assert not is_batch({})
