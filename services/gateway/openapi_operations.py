"""What the OpenAPI document (``gateway.openapi``) describes: one ``Operation`` per method and path the
gateway serves, request bodies as the models that validate them, answers as ``gateway.openapi_shapes``.
The admin API's and ``/auth``'s operations are in ``gateway.openapi_admin``, the operator's in
``gateway.openapi_operator``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from gateway import openapi_shapes as shapes
from gateway.anthropic import schemas as anthropic_schemas
from gateway.routes import generate, messages, metrics

ErrorShape = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, as the document tells it."""

    method: str
    path: str  # OpenAPI's template: ``{name}``, without Starlette's ``:path`` convertor
    operation_id: str
    summary: str
    tag: str
    answer: type[BaseModel]
    body: type[BaseModel] | None = None
    events: str | None = None  # how the text/event-stream answer (``"stream": true``) goes
    errors: tuple[int, ...] = ()
    error_shape: ErrorShape = "openai"
    authenticated: bool = True
    description: str = ""
    notes: Mapping[int, str] = field(default_factory=dict)  # an error's meaning on this operation
    # Other statuses whose body is ``answer`` (``/ready``'s 503), with their meaning.
    other_answers: Mapping[int, str] = field(default_factory=dict)
    parameters: tuple[dict[str, Any], ...] = ()
    ok_status: int = 200


GENERATING_ERRORS = (400, 401, 404, 413, 429, 500, 502, 503, 504)

_OPENAI_EVENTS = (
    'With `"stream": true`: server-sent events, each `data:` a `{chunk}` object, the last one `data: [DONE]`. '
    "With `stream_options.include_usage`, the chunk before `[DONE]` carries `usage`. A failure after the first "
    'byte ends the stream with `data: {{"error": …}}` (the `ErrorResponse` shape) and no `[DONE]`.'
)
_ANTHROPIC_EVENTS = (
    'With `"stream": true`: Anthropic\'s server-sent events, each `event:` line followed by its JSON `data:` '
    "line: `message_start`; per content block `content_block_start`, its `content_block_delta`s (`text_delta` or "
    "`input_json_delta`) and `content_block_stop`; then `message_delta` (stop reason, usage) and `message_stop`. "
    "A failure after the first byte ends the stream with `event: error` (the `AnthropicErrorResponse` shape, "
    "without `request_id`)."
)

# Per generating path: (operationId, summary, answer, what its stream's events are, or None).
_GENERATING: dict[str, tuple[str, str, type[BaseModel], str | None]] = {
    "/v1/chat/completions": (
        "createChatCompletion",
        "Create a chat completion",
        shapes.ChatCompletion,
        _OPENAI_EVENTS.format(chunk="ChatCompletionChunk"),
    ),
    "/v1/completions": (
        "createCompletion",
        "Create a text completion (legacy)",
        shapes.Completion,
        _OPENAI_EVENTS.format(chunk="Completion"),
    ),
    "/v1/embeddings": ("createEmbedding", "Create embeddings", shapes.CreateEmbeddingResponse, None),
    "/v1/images/generations": ("createImage", "Generate images", shapes.ImagesResponse, None),
}


def operations() -> list[Operation]:
    """Every public operation. ``tests/unit/test_gateway_openapi.py`` checks this against the routes
    the application serves, so an endpoint added without a line here fails the tests."""
    # (They build on Operation, defined above: imported here, not at the top.)
    from gateway import openapi_admin, openapi_analytics, openapi_operator

    generating = [
        Operation(
            "post",
            e.path,
            operation_id,
            summary,
            "OpenAI API",
            answer,
            body=e.schema,
            events=events,
            errors=GENERATING_ERRORS,
            description="Routed to a deployment serving `model`, failing over to the next on a retryable error.",
        )
        for e in generate.ENDPOINTS
        for operation_id, summary, answer, events in [_GENERATING[e.path]]
    ]
    return [
        *generating,
        Operation(
            "post",
            messages.ENDPOINT,
            "createMessage",
            "Create a message (Anthropic's Messages API)",
            "Anthropic API",
            shapes.AnthropicMessagesResponse,
            body=anthropic_schemas.MessagesRequest,
            events=_ANTHROPIC_EVENTS,
            errors=GENERATING_ERRORS,
            error_shape="anthropic",
            description=(
                "For Anthropic's SDKs (`x-api-key` auth; no `anthropic-version` header needed). `model` is "
                "routed like any chat model, to a deployment of any provider. Every failure, authentication "
                "included, answers in Anthropic's error shape; a response's id is also in the `request-id` header."
            ),
        ),
        Operation(
            "get",
            "/v1/models",
            "listModels",
            "List the models",
            "OpenAI API",
            shapes.ModelList,
            errors=(401, 500, 503),
            description="Every model some deployment serves, remote catalogues' included.",
        ),
        Operation(
            "get",
            "/v1/models/{model_id}",
            "retrieveModel",
            "Retrieve a model",
            "OpenAI API",
            shapes.Model,
            errors=(401, 404, 500, 503),
            notes={404: "No model has this id."},
            parameters=(
                {
                    "name": "model_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "An id from `GET /v1/models`; it may contain `/` (e.g. `meta-llama/Llama-3.1-8B`).",
                },
            ),
        ),
        *openapi_admin.operations(),
        *openapi_operator.operations(),
        *openapi_analytics.operations(),
        Operation(
            "get",
            "/metrics",
            "metrics",
            "Prometheus metrics, or a JSON summary of usage and cost",
            "Metrics",
            metrics.MetricsSummary,
            errors=(401, 403),
            description=(
                "An ops key or the master key. Prometheus text (`text/plain; version=0.0.4`; OpenMetrics when "
                "`Accept` asks for it): requests by model, provider and status, latency and time-to-first-token "
                "histograms, tokens, cost in USD, requests in flight, refusals by limit, upstream errors by "
                "provider and kind. With `Accept: application/json`, the summary documented here. The cluster's "
                "scraper reads the text without a key on the gateway's internal `METRICS_PORT`."
            ),
        ),
        Operation(
            "get",
            "/health",
            "health",
            "Liveness: the process answers",
            "Health",
            shapes.Health,
            authenticated=False,
        ),
        Operation(
            "get",
            "/ready",
            "ready",
            "Readiness: the router and NATS are reachable and the gateway is not draining",
            "Health",
            shapes.Ready,
            authenticated=False,
            other_answers={503: "Not ready: the same body, with `status: unavailable`."},
            description=(
                "A 503 takes the replica out of rotation. A failing remote catalogue shows in `details.catalogs` "
                "and does not make the gateway unready."
            ),
        ),
    ]
