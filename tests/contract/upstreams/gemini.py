"""Google's Gemini API wire format (see ``fixtures/gemini/README.md`` for the sources):
``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent?alt=sse`` /
``:batchEmbedContents``, the key in ``x-goog-api-key``, SSE ``data: {GenerateContentResponse}`` events
with CRLF framing and no terminator, and ``{"error": {code, message, status}}`` error bodies."""

from __future__ import annotations

from typing import Any

import orjson

from tests.contract.server import Received
from tests.contract.story import load_fixture


class GeminiWire:
    lacks = frozenset({"passthrough"})
    base_path = ""  # the adapter's paths start with the API version
    stream_media_type = "text/event-stream"

    def read(self, received: Received) -> None:
        body = received.body
        received.api_key = received.headers.get("x-goog-api-key")
        target = received.path.removeprefix("/v1beta/models/")
        received.model, _, method = target.rpartition(":")
        received.stream = method == "streamGenerateContent"
        received.tool_names = [
            declaration["name"]
            for tool in body.get("tools") or ()
            for declaration in tool.get("functionDeclarations") or ()
        ]
        received.tool_results = [
            (part["functionResponse"].get("id"), part["functionResponse"]["response"]["output"])
            for content in body.get("contents") or ()
            for part in content.get("parts") or ()
            if "functionResponse" in part
        ]

    def answer(self, fixture: str, received: Received) -> bytes:
        if received.path.endswith(":batchEmbedContents"):
            return orjson.dumps(embeddings_for(received.body))
        return orjson.dumps(load_fixture("gemini", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        events: list[dict[str, Any]] = load_fixture("gemini", f"{fixture}.stream")
        return [b"data: " + orjson.dumps(event) + b"\r\n\r\n" for event in events]

    def error(self, status: int, message: str) -> bytes:
        google_status = load_fixture("gemini", "errors").get(str(status), "UNKNOWN")
        return orjson.dumps({"error": {"code": status, "message": message, "status": google_status}})


def embeddings_for(body: dict[str, Any]) -> dict[str, Any]:
    """A fake ``batchEmbedContents`` answer: for text ``t`` at position ``i``, the vector
    ``[len(t), i, 0.5, -0.25, ...]`` cut to the request's ``outputDimensionality`` (default 4)."""
    embeddings = []
    for i, request in enumerate(body["requests"]):
        text = "".join(part["text"] for part in request["content"]["parts"])
        size = request.get("outputDimensionality", 4)
        values = [float(len(text)), float(i), 0.5, -0.25, *([0.125] * max(0, size - 4))]
        embeddings.append({"values": values[:size]})
    return {"embeddings": embeddings}


WIRE = GeminiWire()
