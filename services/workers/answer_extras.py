"""What the worker adds to every answer it writes (chat, completions, embeddings): ``router_metadata``
(why this deployment: ``common.route_metadata``) and the request's cost in ``usage``
(``input_cost_usd``, ``output_cost_usd``, ``total_cost_usd``).

The cost is ``common.pricing.request_cost`` of the usage the worker reports in its ``Result`` at the
target's price: the function and the figures accounting stores the row with, so the answer and the
ledger agree to the last digit. Amounts are written as exact decimal JSON numbers (no binary float in
between); an unknown price is ``null``, never 0.

A whole answer gets both in its body. A stream gets them in its last chunk: the usage chunk when the
client asked for it, else the chunk that finishes the answer. Which chunk is last is only known when
the next one arrives, so ``StreamTail`` holds back a chunk that may be last (one that finishes a
choice, or the usage chunk) until then: text chunks are never delayed, and the finish chunk only by
the moment between it and the end of the upstream's stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from common.pricing import Cost, billed_cost, usd_json
from common.providers.base import ProviderResponse, StreamChunk, Usage
from common.route_metadata import RouteMetadata
from modelrouter.events.v1 import events_pb2

# The answers that carry the extras; images are left as the provider shaped them.
OPERATIONS = frozenset(
    {
        events_pb2.OPERATION_CHAT_COMPLETIONS,
        events_pb2.OPERATION_COMPLETIONS,
        events_pb2.OPERATION_EMBEDDINGS,
    }
)


def _usd(amount: Any) -> orjson.Fragment:
    return orjson.Fragment(usd_json(amount))


class AnswerExtras:
    """One job's extras: built once per job from its target and the route's explanation."""

    __slots__ = ("_metadata", "_price")

    def __init__(self, job: events_pb2.Job) -> None:
        self._metadata = RouteMetadata.of(job.target, job.explanation, job.attempt + 1, "")
        self._price = job.target.price

    @classmethod
    def for_job(cls, job: events_pb2.Job) -> AnswerExtras | None:
        return cls(job) if job.operation in OPERATIONS else None

    def cost(self, usage: Usage) -> Cost | None:
        return billed_cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, self._price)

    def add_to(self, body: dict[str, Any], usage: Usage) -> None:
        """Write the extras into an OpenAI-format answer or chunk (in place)."""
        cost = self.cost(usage)
        total = _usd(cost.total) if cost is not None else None
        fields = body.get("usage")
        if isinstance(fields, dict):
            fields["input_cost_usd"] = _usd(cost.input) if cost is not None else None
            fields["output_cost_usd"] = _usd(cost.output) if cost is not None else None
            fields["total_cost_usd"] = total
        body["router_metadata"] = self._metadata.json(total)

    def whole(self, response: ProviderResponse) -> bytes:
        """The body of a non-streamed answer, with the extras."""
        body = response.answer if response.answer is not None else _json_object(response.body)
        if body is None:  # not a JSON object (an adapter's bug): relayed as it is rather than lost
            return response.body
        self.add_to(body, response.usage)
        return orjson.dumps(body)

    def last_chunk(self, chunk: StreamChunk, usage: Usage) -> StreamChunk:
        body = chunk.json if chunk.json is not None else _json_object(chunk.data)
        if body is None:
            return chunk
        self.add_to(body, usage)
        return chunk.with_body(body)


class StreamTail:
    """The chunks of one stream to send, in order, the last one with the extras."""

    __slots__ = ("_extras", "_held")

    def __init__(self, extras: AnswerExtras | None) -> None:
        self._extras = extras
        self._held: StreamChunk | None = None

    def push(self, chunk: StreamChunk) -> list[StreamChunk]:
        """What to send now that ``chunk`` arrived: the chunk held before it, and ``chunk`` itself
        unless it may be the last."""
        if self._extras is None:
            return [chunk]
        out = [self._held] if self._held is not None else []
        if chunk.finish or chunk.usage_only:
            self._held = chunk
        else:
            self._held = None
            out.append(chunk)
        return out

    def end(self, usage: Usage) -> StreamChunk | None:
        """The stream ended well: its last chunk, with the extras for ``usage`` (what the job reports)."""
        held, self._held = self._held, None
        if held is None or self._extras is None:
            return held
        return self._extras.last_chunk(held, usage)

    def release(self) -> StreamChunk | None:
        """The stream failed: the chunk held back, as it came (the error that follows ends the stream)."""
        held, self._held = self._held, None
        return held


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
