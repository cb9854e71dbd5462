"""A provider with a remote model catalogue, as one real HTTP origin: ``GET <catalog_path>`` answers
the catalogue JSON (only with ``Authorization: OAuth <token>``), every other path is an
OpenAI-compatible upstream (``tests.contract``'s fake, OpenAI wire). One origin for both, because
catalogue models are served on the catalogue's own scheme and host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tests.contract.server import UpstreamServer
from tests.contract.upstreams.openai import WIRE

CATALOG_PATH = "/catalogue/v2/models.json"


def entry(
    version: str, family: str, handle: str, prompt: float = 0.25, completion: float = 0.5, **extra: Any
) -> dict[str, Any]:
    """One catalogue entry, as the issue's JSON has it."""
    return {
        "model_version": version,
        "model_family": family,
        "handle": handle,
        "prompt_price_1k": prompt,
        "completion_price_1k": completion,
        **extra,
    }


class CatalogServer(UpstreamServer):
    def __init__(self, token: str, models: list[dict[str, Any]] | None = None) -> None:
        super().__init__(WIRE)
        self.token = token
        self.document = orjson.dumps({"models": models or []})
        self.failure: int | None = None  # answer this status instead of the catalogue
        self.catalog_fetches: list[Mapping[str, str]] = []  # each fetch's headers (lower-case names)

    @property
    def catalog_url(self) -> str:
        # A query string too: the models' base URLs must take only the scheme and host from it.
        return f"http://127.0.0.1:{self.port}{CATALOG_PATH}?region=test"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, models: list[dict[str, Any]]) -> None:
        self.document = orjson.dumps({"models": models})
        self.failure = None

    def serve_raw(self, document: bytes) -> None:
        self.document = document
        self.failure = None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CATALOG_PATH:
            await super()._app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self._update(lambda: self.catalog_fetches.append(headers))
        if headers.get("authorization") != f"OAuth {self.token}":
            status, body = 401, b'{"error": "bad or missing OAuth token"}'
        elif self.failure is not None:
            status, body = self.failure, b'{"error": "catalogue unavailable"}'
        else:
            status, body = 200, self.document
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
