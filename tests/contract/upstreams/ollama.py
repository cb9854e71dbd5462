"""Ollama's native wire format (``docs/api.md``, ``docs/api/streaming.mdx``, ``docs/api/errors.mdx`` in
github.com/ollama/ollama): ``POST /api/chat`` under the server's root, answering one JSON object, or
NDJSON (one object per line, the last with ``"done": true`` and the token counts) unless the request
says ``"stream": false`` (Ollama streams by default); errors are ``{"error": "..."}``."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


class OllamaWire:
    lacks = frozenset({"cached_tokens", "passthrough"})
    base_path = ""
    stream_media_type = "application/x-ndjson"

    def read(self, received: Received) -> None:
        body = received.body
        auth = received.headers.get("authorization", "")
        received.api_key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        received.model = body.get("model")
        received.stream = received.path != "/api/embed" and body.get("stream", True) is not False  # embed never streams
        received.tool_names = [t["function"]["name"] for t in body.get("tools") or ()]
        # A tool result carries the id of the call it answers (tool_call_id) and the tool's name.
        received.tool_results = [
            (m.get("tool_call_id"), m["content"]) for m in body.get("messages") or () if m.get("role") == "tool"
        ]

    def answer(self, fixture: str, received: Received) -> bytes:
        return orjson.dumps(load_fixture("ollama", _ENDPOINT_FIXTURES.get(received.path, {}).get(fixture, fixture)))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        fixture = _ENDPOINT_FIXTURES.get(received.path, {}).get(fixture, fixture)
        lines: list[dict[str, Any]] = load_fixture("ollama", f"{fixture}.stream")
        return [orjson.dumps(line) + b"\n" for line in lines]

    def error(self, status: int, message: str) -> bytes:
        return orjson.dumps({"error": message})


# The plain reply and embeddings as /api/generate and /api/embed answer them (the operation cases of
# test_operations_conformance.py).
_ENDPOINT_FIXTURES: dict[str, dict[str, str]] = {
    "/api/generate": {"chat": "generate"},
    "/api/embed": {"embeddings": "embed"},
}

WIRE = OllamaWire()
