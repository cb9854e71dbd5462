"""What the OpenAI-compatible adapter sends and how it reads failures, below the contract suite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from common.providers.base import Operation, ProviderCall
from workers.providers._http import retry_after_s
from workers.providers.openai import error_fields, request_body


def call(body: dict[str, object], *, stream: bool) -> ProviderCall:
    return ProviderCall(
        request_id="r",
        operation=Operation.CHAT,
        body=body,
        upstream_model="up",
        api_key=None,
        timeout_s=1,
        stream=stream,
    )


def test_streaming_always_asks_for_usage_and_keeps_the_clients_stream_options() -> None:
    body = {"model": "public", "stream": True, "stream_options": {"include_usage": False, "x_other": 1}}
    sent = json.loads(request_body(call(body, stream=True)))

    assert sent["model"] == "up"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "x_other": 1}
    assert body["stream_options"] == {"include_usage": False, "x_other": 1}  # the client's body is untouched


def test_every_other_field_goes_upstream_as_the_client_sent_it() -> None:
    body = {"model": "p", "messages": [], "seed": 7, "temperature": 0.2, "user": "u-1", "logit_bias": {"1734": -100}}
    sent = json.loads(request_body(call(body, stream=False)))
    assert sent == {**body, "model": "up"}


def test_a_non_streaming_call_sends_no_stream_options() -> None:
    sent = json.loads(request_body(call({"model": "p", "stream": True, "stream_options": {}}, stream=False)))
    assert sent["stream"] is False and "stream_options" not in sent

    plain = json.loads(request_body(call({"model": "p", "messages": []}, stream=False)))
    assert plain == {"model": "up", "messages": []}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(httpx.Headers(headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_s(httpx.Headers({"retry-after": when}))
    assert seconds is not None and 25 <= seconds <= 30


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "bad", "code": "c", "param": "p"}}, ("bad", "c", "p")),
        ({"error": {"message": "bad", "code": 400, "param": None}}, ("bad", "400", None)),  # vLLM's int code
        ({"error": "plain text"}, ("plain text", None, None)),
        ({"detail": "FastAPI style"}, ("FastAPI style", None, None)),
        ({"message": "bare"}, ("bare", None, None)),
        ([1, 2], ("", None, None)),
    ],
)
def test_error_bodies_of_compatible_servers(body: object, expected: tuple[str, str | None, str | None]) -> None:
    assert error_fields(body) == expected
