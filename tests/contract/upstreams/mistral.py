"""Mistral's wire format: ``POST /v1/chat/completions`` and ``/v1/embeddings`` at the API root, SSE
``data: {chunk}`` events ending with ``data: [DONE]``, usage always in the last chunk (together with
its finish_reason; Mistral has no ``stream_options``), and ``{"object": "error", "message", "type",
"param", "code"}`` error bodies. Sources are listed in ``fixtures/mistral/README.md``."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


class MistralWire:
    base_path = ""
    stream_media_type = "text/event-stream"

    def read(self, received: Received) -> None:
        body = received.body
        auth = received.headers.get("authorization", "")
        received.api_key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        received.model = body.get("model")
        received.stream = bool(body.get("stream"))
        received.tool_names = [t["function"]["name"] for t in body.get("tools") or ()]
        received.tool_results = [
            (m["tool_call_id"], m["content"]) for m in body.get("messages") or () if m.get("role") == "tool"
        ]

    def answer(self, fixture: str, received: Received) -> bytes:
        return orjson.dumps(load_fixture("mistral", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        chunks: list[dict[str, Any]] = load_fixture("mistral", f"{fixture}.stream")
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]

    def error(self, status: int, message: str) -> bytes:
        details = load_fixture("mistral", "errors").get(str(status), {"type": "internal_server_error"})
        return orjson.dumps({"object": "error", "message": message, **details})


WIRE = MistralWire()
