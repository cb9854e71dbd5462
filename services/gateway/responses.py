"""Responses whose bodies are already JSON bytes (no re-serialisation on the hot path)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class RawJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)
