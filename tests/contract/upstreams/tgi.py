"""Hugging Face Text Generation Inference's native wire format (``docs/openapi.json`` in
github.com/huggingface/text-generation-inference): ``POST /generate`` answers ``{"generated_text",
"details"}``; ``POST /generate_stream`` sends SSE ``data:{StreamResponse}`` events, the last with
``generated_text`` and ``details``; errors are ``{"error", "error_type"}``. A native request names no
model (the server serves one) and has no tools, so ``model``, tool names and tool results stay empty."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


class TGIWire:
    lacks = frozenset({"tools", "cached_tokens", "passthrough", "model_name"})
    base_path = ""
    stream_media_type = "text/event-stream"

    def read(self, received: Received) -> None:
        auth = received.headers.get("authorization", "")
        received.api_key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        received.stream = received.path == "/generate_stream"

    def answer(self, fixture: str, received: Received) -> bytes:
        return orjson.dumps(load_fixture("tgi", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        events: list[dict[str, Any]] = load_fixture("tgi", f"{fixture}.stream")
        # TGI writes "data:" with no space before the JSON.
        return [b"data:" + orjson.dumps(event) + b"\n\n" for event in events]

    def error(self, status: int, message: str) -> bytes:
        error_type = load_fixture("tgi", "errors").get(str(status))
        return orjson.dumps({"error": message, **({"error_type": error_type} if error_type else {})})


WIRE = TGIWire()
