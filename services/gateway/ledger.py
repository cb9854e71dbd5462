"""What one request's usage event will say, gathered while it runs, and the event built from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.errors import ModelRouterError
from common.token_estimate import estimate_tokens
from gateway.attempt import Attempt
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

if TYPE_CHECKING:
    from gateway.call import Call


@dataclass(slots=True)
class Ledger:
    target: router_pb2.Target | None = None
    attempt: Attempt | None = None  # the one in flight, which a client disconnect must cancel
    attempts: int = 0
    usage: events_pb2.Usage | None = None
    worker_span: str = ""  # traceparent of the worker span that produced the final result
    first_byte_at: float | None = None
    error: ModelRouterError | None = None
    cancelled: bool = False
    # What was relayed to the client, billed when the worker vanished before its Result said more.
    relayed_chars: int = 0
    prompt_tokens: int = 0
    # The current attempt: when its job went out, and whether the router is owed its outcome
    # (gateway.attempt_outcome).
    attempt_started: float = 0.0
    outcome_due: bool = False

    def close_attempt(self) -> None:
        if self.attempt is not None:
            self.attempt.close()
            self.attempt = None

    def relayed(self, chunk: events_pb2.Chunk) -> None:
        self.relayed_chars += chunk.text_chars
        if chunk.prompt_tokens:
            self.prompt_tokens = chunk.prompt_tokens

    def bill_relayed(self) -> None:
        """Usage for a stream that ended without its worker's Result: the prompt the worker estimated
        and the text the client received."""
        completion = estimate_tokens(self.relayed_chars)
        self.usage = events_pb2.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion,
            total_tokens=self.prompt_tokens + completion,
        )

    def event(self, call: Call, now: float) -> events_pb2.UsageEvent:
        event = events_pb2.UsageEvent(
            request_id=call.request_id,
            key_id=call.key_id,
            endpoint=call.endpoint,
            requested_model=call.model,
            stream=call.stream,
            attempts=self.attempts,
            latency_ms=(now - call.started) * 1000,
            ttft_ms=(self.first_byte_at - call.started) * 1000 if self.first_byte_at else 0.0,
            team_id=call.team_id,
            started_at_unix_ms=call.started_unix_ms,
            finished_at_unix_ms=call.started_unix_ms + int((now - call.started) * 1000),
        )
        if self.target is not None:
            event.provider = self.target.provider
            event.upstream_model = self.target.upstream_model
            event.deployment_id = self.target.deployment_id
            event.price.CopyFrom(self.target.price)
        if self.usage is not None:
            event.usage.CopyFrom(self.usage)
        if self.cancelled:
            event.status = events_pb2.REQUEST_STATUS_CANCELLED
            event.http_status = 499  # the de-facto code for "client closed request"
        elif self.error is not None:
            event.status = events_pb2.REQUEST_STATUS_ERROR
            event.http_status = self.error.status
            event.error_type = self.error.type
            event.error_message = self.error.message[:2000]
        else:
            event.status = events_pb2.REQUEST_STATUS_SUCCESS
            event.http_status = 200
        return event
