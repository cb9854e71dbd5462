"""A wire ``UsageEvent`` -> a ``usage_records`` row (a dict of column values, for a bulk insert).

A JetStream message carries either one ``UsageEvent`` (trace context in its headers) or, with the
``subjects.USAGE_BATCH_HEADER`` header, a ``UsageBatch`` whose events each carry their own
``traceparent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from common import subjects
from common.pricing import request_cost
from modelrouter.events.v1 import events_pb2

_STATUS_NAMES = {
    events_pb2.REQUEST_STATUS_SUCCESS: "success",
    events_pb2.REQUEST_STATUS_ERROR: "error",
    events_pb2.REQUEST_STATUS_CANCELLED: "cancelled",
}


# The row's entry holding the request's texts (None when its key does not store them): not a column
# of usage_records; the store writes it to usage_bodies.
BODIES = "bodies"


class MalformedEventError(ValueError):
    """The message can never become a row: retrying it would not help."""


def _optional(text: str) -> str | None:
    # Proto3 has no null: an empty string means "not known" (e.g. no deployment was chosen).
    return _clean(text) or None


def _clean(text: str) -> str:
    # Postgres text cannot hold NUL; upstream error messages are not ours to trust.
    return text.replace("\x00", "")


def _timestamp(unix_ms: int) -> datetime:
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC)


def decode_event(data: bytes) -> events_pb2.UsageEvent:
    try:
        return events_pb2.UsageEvent.FromString(data)
    except DecodeError as exc:
        raise MalformedEventError(f"not a UsageEvent: {exc}") from None


def row_from_event(event: events_pb2.UsageEvent) -> dict[str, Any]:
    if not event.request_id:
        raise MalformedEventError("UsageEvent has no request_id")
    status = _STATUS_NAMES.get(event.status)
    if status is None:
        raise MalformedEventError(f"UsageEvent {event.request_id}: unknown status {event.status}")
    usage, price = event.usage, event.price
    try:
        # The figure the answer showed (the worker called the same function); None: no known price.
        cost = request_cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, price)
        started_at = _timestamp(event.started_at_unix_ms)
        finished_at = _timestamp(event.finished_at_unix_ms)
    except (ValueError, OverflowError, OSError, ArithmeticError) as exc:
        raise MalformedEventError(f"UsageEvent {event.request_id}: {exc}") from None
    return {
        "request_id": _clean(event.request_id),
        "key_id": _clean(event.key_id),
        "team_id": _optional(event.team_id),  # "" on the wire: a key without a team
        "endpoint": _clean(event.endpoint),
        "requested_model": _clean(event.requested_model),
        "provider": _optional(event.provider),
        "upstream_model": _optional(event.upstream_model),
        "deployment_id": _optional(event.deployment_id),
        "status": status,
        "http_status": event.http_status,
        "error_type": _optional(event.error_type),
        "error_message": _optional(event.error_message),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "cost_usd": cost.total if cost else None,
        "input_cost_usd": cost.input if cost else None,
        "output_cost_usd": cost.output if cost else None,
        "price_unknown": price.unknown,
        "stream": event.stream,
        "attempts": event.attempts,
        "latency_ms": event.latency_ms,
        "ttft_ms": event.ttft_ms or None,  # 0 on the wire when nothing was streamed
        "started_at": started_at,
        "finished_at": finished_at,
        BODIES: _bodies(event) if event.bodies_stored else None,
    }


def _bodies(event: events_pb2.UsageEvent) -> dict[str, Any]:
    return {
        "prompt_text": _clean(event.prompt_text),
        "response_text": _clean(event.response_text),
        "prompt_truncated": event.prompt_truncated,
        "response_truncated": event.response_truncated,
    }


def row_from_message(data: bytes) -> dict[str, Any]:
    return row_from_event(decode_event(data))


@dataclass(frozen=True)
class EventRow:
    """One event of a message: its row, or (``row`` None) why it can never be one."""

    request_id: str
    # The event's own producer context; "" when it travelled in the message headers instead.
    traceparent: str
    row: dict[str, Any] | None
    error: str = ""


def is_batch(headers: Mapping[str, str] | None) -> bool:
    return headers is not None and headers.get(subjects.USAGE_BATCH_HEADER) == "1"


def rows_from_message(data: bytes, headers: Mapping[str, str] | None) -> list[EventRow]:
    """The events of one message, in order.

    Raises MalformedEventError when the message as a whole can never be stored: a payload that does
    not decode, or a single-event message whose event cannot be a row. A bad event inside a batch
    is returned with its ``error`` instead, so that the rest of the batch is still stored.
    """
    if not is_batch(headers):
        row = row_from_message(data)
        return [EventRow(row["request_id"], "", row)]
    try:
        batch = events_pb2.UsageBatch.FromString(data)
    except DecodeError as exc:
        raise MalformedEventError(f"not a UsageBatch: {exc}") from None
    found: list[EventRow] = []
    for event in batch.events:
        try:
            found.append(EventRow(_clean(event.request_id), event.traceparent, row_from_event(event)))
        except MalformedEventError as exc:
            found.append(EventRow(_clean(event.request_id), event.traceparent, None, str(exc)))
    return found
