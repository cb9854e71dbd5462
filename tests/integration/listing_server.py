"""An upstream that also lists its models, as discovery asks: a ``tests.contract`` fake upstream (the
provider's real wire format for its requests) whose listing path answers the models it is told to
serve, in that provider's listing shape (OpenAI's ``GET /v1/models``, Ollama's ``GET /api/tags``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tests.contract.server import UpstreamServer
from tests.contract.upstreams import wire_of


def openai_listing(names: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 1686935002, "owned_by": "system"} for n in names],
    }


def ollama_listing(names: list[str]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": n,
                "model": n,
                "modified_at": "2024-05-01T12:00:00.000000+00:00",
                "size": 3826793677,
                "digest": "78e26419b4469263f75331927a00a0284ef6544c1975b826b15abdaef17bb962",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "7B", "quantization_level": "Q4_0"},
            }
            for n in names
        ]
    }


# wire -> (listing path, listing shape)
LISTINGS = {"openai": ("/v1/models", openai_listing), "ollama": ("/api/tags", ollama_listing)}


class ListingServer(UpstreamServer):
    def __init__(self, provider: str, models: list[str]) -> None:
        super().__init__(wire_of(provider))
        self.listing_path, self._shape = LISTINGS[provider]
        self.models = list(models)
        self.failure: int | None = None  # answer the listing with this status instead
        self.raw: bytes | None = None  # answer the listing with this body instead
        self.listings: list[Mapping[str, str]] = []  # each listing request's headers (lower-case names)

    def __enter__(self) -> ListingServer:
        self.start()
        return self

    def serve(self, models: list[str]) -> None:
        self.models, self.failure, self.raw = list(models), None, None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != self.listing_path:
            await super()._app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self._update(lambda: self.listings.append(headers))
        if self.failure is not None:
            status, body = self.failure, b'{"error": "listing unavailable"}'
        else:
            status, body = 200, self.raw if self.raw is not None else orjson.dumps(self._shape(self.models))
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
