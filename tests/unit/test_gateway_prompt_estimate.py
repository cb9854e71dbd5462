"""The prompt estimate tpm limits and key reservations count: the body's bytes / 4, except that an
inline image counts as IMAGE_TOKENS (above what one image is billed), not as its base64 bytes."""

from __future__ import annotations

import base64

import orjson

from gateway.prompt_estimate import IMAGE_TOKENS, estimate_prompt_tokens
from gateway.schemas import ChatCompletionRequest, CompletionRequest, parse_body


def test_text_counts_four_bytes_a_token() -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello " * 100}]})
    assert estimate_prompt_tokens(parse_body(ChatCompletionRequest, body), body) == len(body) // 4
    completion = orjson.dumps({"model": "m", "prompt": "x" * 400})
    assert estimate_prompt_tokens(parse_body(CompletionRequest, completion), completion) == len(completion) // 4


def test_an_inline_image_counts_as_an_image_not_as_its_bytes() -> None:
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 3_000_000).decode()
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image}}]
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": content}, {"role": "user", "content": content}]}
    )
    estimate = estimate_prompt_tokens(parse_body(ChatCompletionRequest, body), body)
    assert estimate == (len(body) - 2 * len(image)) // 4 + 2 * IMAGE_TOKENS
    assert estimate < 6000  # not the ~2M tokens four bytes a token would make of 8 MB of base64
