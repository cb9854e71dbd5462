"""OpenAI's wire format (also Cerebras, DeepInfra, Fireworks, Groq, Mistral, vLLM, Ollama's /v1):
``POST /v1/chat/completions``, SSE ``data: {chunk}`` events ending with ``data: [DONE]``, the usage
chunk (``choices: []``) only when ``stream_options.include_usage`` asked for it, and
``{"error": {message, type, param, code}}`` error bodies."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


class OpenAIWire:
    base_path = "/v1"
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
        return orjson.dumps(load_fixture("openai", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        chunks: list[dict[str, Any]] = load_fixture("openai", f"{fixture}.stream")
        options = received.body.get("stream_options") or {}
        if options.get("include_usage"):
            # OpenAI then adds "usage": null to every chunk but the last.
            chunks = [c if not c["choices"] else {**c, "usage": None} for c in chunks]
        else:
            chunks = [c for c in chunks if c["choices"]]
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]

    def error(self, status: int, message: str) -> bytes:
        details = load_fixture("openai", "errors").get(str(status), {"type": "server_error"})
        return orjson.dumps({"error": {"message": message, **details}})


WIRE = OpenAIWire()
