"""Anthropic's wire format: ``POST /v1/messages`` with ``x-api-key`` / ``anthropic-version`` headers,
SSE events ``event: <type>`` + ``data: {json}`` (message_start ... message_stop; usage always
included), and ``{"type": "error", "error": {"type", "message"}}`` error bodies. Sources are listed
in ``fixtures/anthropic/README.md``.

Write boundaries: Anthropic sends ``message_start``, ``content_block_start`` and ``ping`` together,
before the first token is generated; this fake sends them as one write, and every later event as a
write of its own. The suite's stream scenarios (hold or die "after N chunks") count writes, so
"after 3" means after the opening and two pieces of text, as it does for OpenAI's one chunk per event.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture

_OPENING_EVENTS = frozenset({"message_start", "content_block_start", "ping"})


class AnthropicWire:
    base_path = ""  # the adapter's base URL is the host; it posts to /v1/messages
    stream_media_type = "text/event-stream"

    def read(self, received: Received) -> None:
        body = received.body
        received.api_key = received.headers.get("x-api-key")
        received.model = body.get("model")
        received.stream = bool(body.get("stream"))
        received.tool_names = [t["name"] for t in body.get("tools") or ()]
        received.tool_results = [
            (block["tool_use_id"], _text_of(block.get("content")))
            for message in body.get("messages") or ()
            if message.get("role") == "user" and isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]

    def answer(self, fixture: str, received: Received) -> bytes:
        return orjson.dumps(load_fixture("anthropic", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        events: list[dict[str, Any]] = load_fixture("anthropic", f"{fixture}.stream")
        encoded = [f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events]
        opening = 0
        while opening < len(events) and events[opening]["type"] in _OPENING_EVENTS:
            opening += 1
        return [b"".join(encoded[:opening]), *encoded[opening:]] if opening else encoded

    def error(self, status: int, message: str) -> bytes:
        types: dict[str, str] = load_fixture("anthropic", "errors")
        error_type = types.get(str(status), "api_error" if status >= 500 else "invalid_request_error")
        return orjson.dumps(
            {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
            }
        )


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content)
    return str(content)


WIRE = AnthropicWire()
