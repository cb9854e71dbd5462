"""Server-sent-event encoders: how a stream of OpenAI-format chunks reaches a client.

The dispatcher relays chunks through a ``StreamEncoder``; the OpenAI encoder is a pass-through that
only adds framing. Another ingress format (e.g. Anthropic's Messages API) supplies its own encoder.
"""

from __future__ import annotations

from typing import Protocol

from common.errors import ModelRouterError
from modelrouter.events.v1 import events_pb2

DONE = b"data: [DONE]\n\n"


def frame(data: bytes) -> bytes:
    """One ``data:`` event. ``data`` is compact JSON (orjson or the provider's), so has no newline."""
    return b"data: " + data + b"\n\n"


class StreamEncoder(Protocol):
    def chunk(self, data: bytes) -> bytes:
        """Bytes to send for one OpenAI-format chunk (may be empty)."""

    def done(self, usage: events_pb2.Usage) -> bytes:
        """Bytes that end a successful stream."""

    def error(self, error: ModelRouterError) -> bytes:
        """Bytes that end a stream that failed after its first byte."""


class OpenAIEncoder:
    """``data: {chunk}`` frames, ``data: [DONE]`` at the end, an in-band ``{"error": …}`` on failure."""

    def chunk(self, data: bytes) -> bytes:
        return b"data: " + data + b"\n\n"

    def done(self, usage: events_pb2.Usage) -> bytes:
        return DONE

    def error(self, error: ModelRouterError) -> bytes:
        return frame(error.to_json())
