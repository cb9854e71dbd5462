"""Usage the worker reports when the provider gave none, and how errors cross NATS."""

from __future__ import annotations

from common.errors import UpstreamBadRequestError, UpstreamRateLimitError
from common.providers.base import StreamChunk, Usage
from workers.outcome import JobCancelledError, error_message
from workers.usage import UsageMeter, prompt_chars

BODY = {
    "messages": [
        {"role": "system", "content": "be brief"},  # 8
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {}}]},  # 5
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},  # 3
    ]
}


def test_prompt_chars_count_text_parts_and_tool_calls() -> None:
    assert prompt_chars(BODY) == 16
    assert prompt_chars({"prompt": ["ab", "cd"]}) == 4


def test_meter_prefers_reported_usage() -> None:
    meter = UsageMeter(BODY)
    meter.observe(StreamChunk(data=b"{}", text_chars=400))
    meter.observe(StreamChunk(data=b"{}", usage=Usage(prompt_tokens=1, completion_tokens=2), usage_only=True))
    assert meter.counted(prompt_sent=True) == Usage(prompt_tokens=1, completion_tokens=2)


def test_meter_estimates_four_characters_a_token_when_nothing_was_reported() -> None:
    meter = UsageMeter(BODY)
    meter.observe(StreamChunk(data=b"{}", text_chars=9))
    assert meter.counted(prompt_sent=False) == Usage(prompt_tokens=4, completion_tokens=3)


def test_meter_counts_nothing_for_a_call_that_produced_nothing_unless_the_prompt_was_sent() -> None:
    meter = UsageMeter(BODY)
    assert meter.counted(prompt_sent=False) == Usage()
    assert meter.counted(prompt_sent=True) == Usage(prompt_tokens=4, completion_tokens=0)


def test_error_message_carries_the_class_attributes() -> None:
    error = error_message(UpstreamRateLimitError("slow down", upstream_status=429, retry_after_s=2.5))
    assert (error.status, error.type, error.code, error.retryable) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        True,
    )
    assert (error.message, error.retry_after_s, error.upstream_status) == ("slow down", 2.5, 429)

    bad = error_message(UpstreamBadRequestError("no", upstream_status=400, param="messages", code="c"))
    assert (bad.status, bad.retryable, bad.param, bad.code) == (400, False, "messages", "c")

    cancelled = error_message(JobCancelledError("gone"))
    assert (cancelled.type, cancelled.retryable, cancelled.upstream_status) == ("cancelled", False, 0)
