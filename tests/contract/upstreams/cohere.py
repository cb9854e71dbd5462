"""Cohere's v2 wire format: ``POST /v2/chat`` and ``POST /v2/embed`` at the API root, SSE events
``event: <type>`` + ``data: {"type": <type>, ...}`` ending with ``message-end`` (no ``[DONE]``), and
``{"id", "message"}`` error bodies. Sources are listed in ``fixtures/cohere/README.md``."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


class CohereWire:
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
            (m["tool_call_id"], _text(m.get("content"))) for m in body.get("messages") or () if m.get("role") == "tool"
        ]

    def answer(self, fixture: str, received: Received) -> bytes:
        if received.path == "/v2/embed":  # the embeddings case of test_operations_conformance.py
            return orjson.dumps(load_fixture("cohere", "embed"))
        return orjson.dumps(load_fixture("cohere", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        events: list[dict[str, Any]] = load_fixture("cohere", f"{fixture}.stream")
        return [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events]

    def error(self, status: int, message: str) -> bytes:
        return orjson.dumps({"id": "3d5a4c1e-0b7f-4f3a-9a56-2f1b9d8e7c60", "message": message})


WIRE = CohereWire()
