"""OpenAI's wire format (also Cerebras, DeepInfra, Fireworks, Groq, Mistral, vLLM, Ollama's /v1):
``POST /v1/chat/completions`` and ``/v1/completions`` (SSE ``data: {chunk}`` events ending with
``data: [DONE]``, the usage chunk (``choices: []``) only when ``stream_options.include_usage`` asked
for it), ``/v1/embeddings``, ``/v1/images/generations``, and ``{"error": {message, type, param, code}}``
error bodies. Sources are listed in ``fixtures/openai/README.md``.

The scenario's plain reply (fixture ``chat``) is, on each other endpoint, that endpoint's fixture
(``_ENDPOINT_FIXTURES``), so one server answers every endpoint of an OpenAI-compatible API. Embeddings
are computed from the request like OpenAI computes them (one per input, ``dimensions`` long, base64
float32 when ``encoding_format`` asks), around the recorded envelope of ``embeddings.json``."""

from __future__ import annotations

import base64
import struct
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
        fixture = endpoint_fixture(fixture, received)
        if fixture == "embeddings":
            return orjson.dumps(embeddings_for(received.body))
        if fixture == "image":
            return orjson.dumps(images_for(received.body))
        return orjson.dumps(load_fixture("openai", fixture))

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        fixture = endpoint_fixture(fixture, received)
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


_ENDPOINT_FIXTURES = {
    "/v1/completions": "completion",
    "/v1/embeddings": "embeddings",
    "/v1/images/generations": "image",
}


def endpoint_fixture(fixture: str, received: Received) -> str:
    """The fixture to answer with: the plain reply (``chat``) is each endpoint's own."""
    return _ENDPOINT_FIXTURES.get(received.path, fixture) if fixture == "chat" else fixture


def embedding(text: str, index: int, dimensions: int) -> list[float]:
    """For text ``t`` at position ``i``: ``[len(t), i, 0.5, -0.25, 0.125, ...]``, ``dimensions`` long
    (float32 values, so base64 and float answers carry the same numbers)."""
    values = [float(len(text)), float(index), 0.5, -0.25, *([0.125] * max(0, dimensions - 4))]
    return values[:dimensions]


def embeddings_for(body: dict[str, Any]) -> dict[str, Any]:
    raw = body["input"]
    if isinstance(raw, str):
        texts = [raw]
    elif all(isinstance(t, int) for t in raw):  # one token array
        texts = [" ".join(map(str, raw))]
    else:
        texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in raw]
    dimensions = int(body.get("dimensions") or 4)
    as_base64 = body.get("encoding_format") == "base64"
    answer: dict[str, Any] = dict(load_fixture("openai", "embeddings"))
    data = []
    for i, text in enumerate(texts):
        vector = embedding(text, i, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(len(text.split()) for text in texts)
    answer.update(data=data, model=body.get("model"), usage={"prompt_tokens": tokens, "total_tokens": tokens})
    return answer


def images_for(body: dict[str, Any]) -> dict[str, Any]:
    """The recorded image answer (``image.url`` when the request asked for URLs), one item per image asked for."""
    answer: dict[str, Any] = dict(
        load_fixture("openai", "image.url" if body.get("response_format") == "url" else "image")
    )
    answer["data"] = answer["data"][:1] * int(body.get("n") or 1)
    return answer


WIRE = OpenAIWire()
