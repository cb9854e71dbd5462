"""Server-sent-event framing for OpenAI-style streams."""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"


def frame(data: bytes) -> bytes:
    """One ``data:`` event. ``data`` is compact JSON (orjson or the provider's), so has no newline."""
    return b"data: " + data + b"\n\n"
