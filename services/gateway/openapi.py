"""The gateway's OpenAPI document at ``/openapi.json``, read with Swagger UI at ``/docs`` and ReDoc at
``/redoc``.

FastAPI describes only the routes it dispatches itself, and the generating endpoints are plain
Starlette routes that the fast lane (``gateway.edge``) serves without FastAPI's routing and
dependency solving: FastAPI's own document left out exactly the endpoints clients come for. So the
document is written here, from the table in ``gateway.openapi_operations``: request bodies are the
models that validate them, answers are ``gateway.openapi_shapes``, errors are examples made by the
error tree itself. Nothing
here runs on a request's path but the three GET routes that serve it; the document is built at the
first request for it and kept as bytes.

Swagger UI and ReDoc are FastAPI's HTML pages: their JavaScript and CSS come from a CDN (jsDelivr)
in the reader's browser, so the gateway serves no assets.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from common.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelRouterError,
    NoHealthyTargetError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway import openapi_shapes as shapes
from gateway.anthropic import schemas as anthropic_schemas
from gateway.anthropic.errors import error_object, error_type
from gateway.openapi_operations import ErrorShape, Operation, operations
from gateway.responses import RawJSONResponse
from gateway.routes import generate

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
TITLE = "ModelRouter"

_PASSED_THROUGH = (
    "Parameters not listed here are not checked by the gateway: they reach the provider as sent "
    "(an adapter that cannot honour one answers 400)."
)


# --- errors -----------------------------------------------------------------------------------------

_ERROR_MEANINGS = {
    400: "The body is not JSON, or a parameter is missing or invalid (`param` names it); or the provider "
    "refused the request as invalid.",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The key may not do this: a model outside its allow-list, or an endpoint for ops keys or the master key.",
    404: "No deployment serves the model the request names.",
    413: "The body is larger than the gateway's limit (`MAX_BODY_BYTES`, 32 MiB by default).",
    429: "The model's rate limits are reached on every target; `Retry-After` says when to try again.",
    500: "The gateway failed.",
    502: "The provider failed.",
    503: "No healthy target can serve the request, or the provider is overloaded.",
    504: "The provider did not answer in time.",
}

# One example per status, made by the error tree, so the document shows what the gateway sends.
_ERROR_EXAMPLES: dict[int, ModelRouterError] = {
    400: InvalidRequestError("Missing required parameter: 'messages'.", param="messages"),
    401: AuthenticationError("Incorrect API key provided: sk-***6789."),
    403: PermissionDeniedError(
        "The admin API needs the master key (MODELROUTER_MASTER_KEY).", code="master_key_required"
    ),
    404: NotFoundError("The model `no-such-model` does not exist or you do not have access to it."),
    413: PayloadTooLargeError("Request body is larger than the limit of 4194304 bytes."),
    429: RateLimitError("Rate limit reached for model `gpt-4o-mini`.", retry_after_s=3),
    500: ModelRouterError("The server had an error while processing your request."),
    502: UpstreamError("The upstream provider returned a malformed chat completion."),
    503: NoHealthyTargetError("The router is unavailable.", code="router_unavailable"),
    504: UpstreamTimeoutError("No answer from the worker within 65s."),
}

# Anthropic's ingress words a bad parameter its own way (``gateway.anthropic.schemas``).
_ANTHROPIC_EXAMPLES: dict[int, ModelRouterError] = {
    400: InvalidRequestError("messages: Field required", param="messages"),
}

_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}


def _error_response(status: int, shape: ErrorShape, note: str | None) -> dict[str, Any]:
    if shape == "anthropic":
        example = _ANTHROPIC_EXAMPLES.get(status) or _ERROR_EXAMPLES[status]
        schema = _ref(shapes.AnthropicErrorResponse)
        body = error_object(example) | {"request_id": "msg-0c1f4e1a9d3b4b6f8e2a7c5d9b1e3f40"}
        description = f"`{error_type(status)}`: {note or _ERROR_MEANINGS[status]}"
    else:
        schema = _ref(shapes.ErrorResponse)
        body = _ERROR_EXAMPLES[status].to_dict()
        description = note or _ERROR_MEANINGS[status]
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema, "example": body}},
    }
    if status == 429:
        out["headers"] = {"Retry-After": _RETRY_AFTER}
    return out


# --- the document -----------------------------------------------------------------------------------

BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    API_KEY: {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "`x-api-key: <key>`"},
}
_REQUEST_ID = {"description": "The request's id, also the key of its usage record.", "schema": {"type": "string"}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{_component_name(model)}"}


def _component_name(model: type[BaseModel]) -> str:
    # The Anthropic request models share names with OpenAI's concepts (Message, Tool, ToolChoice…).
    name = model.__name__
    return f"Anthropic{name}" if model.__module__ == anthropic_schemas.__name__ else name


def _operation(op: Operation) -> dict[str, Any]:
    # Each generating request (the operations with a body) has an id, sent back as a header.
    headers = {"x-request-id": _REQUEST_ID} if op.body is not None else {}
    if op.error_shape == "anthropic":
        headers["request-id"] = _REQUEST_ID
    ok: dict[str, Any] = {"description": "OK", "content": {"application/json": {"schema": _ref(op.answer)}}}
    if op.events:
        ok["description"] = f'`"stream": false` (the default): one JSON object. {op.events}'
        ok["content"]["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-sent events, as the response's description says."}
        }
    if headers:
        ok["headers"] = headers
    responses = {str(op.ok_status): ok}
    for status, meaning in op.other_answers.items():
        responses[str(status)] = {"description": meaning, "content": {"application/json": {"schema": _ref(op.answer)}}}
    for status in op.errors:
        responses[str(status)] = _error_response(status, op.error_shape, op.notes.get(status))
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{BEARER: []}, {API_KEY: []}] if op.authenticated else [],
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if op.parameters:
        out["parameters"] = list(op.parameters)
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    return out


def _components(ops: list[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for op in ops:
        if op.body is not None:
            models.append((op.body, "validation"))
        models.append((op.answer, "serialization"))
    # Described in prose (event streams, error bodies), so listed for readers and tools to find.
    extra: list[type[BaseModel]] = [
        shapes.ChatCompletionChunk,
        shapes.ErrorResponse,
        shapes.AnthropicErrorResponse,
    ]
    models += [(m, "serialization") for m in extra]
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]
    renames = {
        m.__name__: _component_name(m)
        for m in vars(anthropic_schemas).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == anthropic_schemas.__name__
    }
    schemas = {renames.get(name, name): _renamed(schema, renames) for name, schema in schemas.items()}
    for name, schema in schemas.items():
        if schema.get("title") in renames:
            schema["title"] = name
    assert len(schemas) == len(top["$defs"]), "two components under one name"
    for e in generate.ENDPOINTS:  # modelled with ``extra="allow"``: say what that means to a client
        schema = schemas[_component_name(e.schema)]
        schema["description"] = " ".join(filter(None, [schema.get("description"), _PASSED_THROUGH]))
    return {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES}


def _renamed(node: Any, renames: Mapping[str, str]) -> Any:
    """``node`` with the components in ``renames`` under their new names, and every $ref to them."""
    prefix = "#/components/schemas/"
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(prefix):
                name = value.removeprefix(prefix)
                out[key] = prefix + renames.get(name, name)
            else:
                out[key] = _renamed(value, renames)
        return out
    if isinstance(node, list):
        return [_renamed(item, renames) for item in node]
    return node


@functools.cache
def version() -> str:
    """The installed package's version (the document's, and seed 001's ``GET /``)."""
    try:
        return metadata.version("modelrouter")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


def document() -> dict[str, Any]:
    ops = operations()
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": version(),
            "description": (
                "An OpenAI-compatible LLM gateway: OpenAI's SDKs (base URL `…/v1`) and Anthropic's (base URL "
                "`…`) work unchanged, in front of many providers, with failover and rate limits. Authenticate "
                "with `Authorization: Bearer <key>` or `x-api-key: <key>`. Errors have OpenAI's shape "
                '`{"error": {"message", "type", "param", "code"}}` (Anthropic\'s on `/v1/messages`).'
            ),
        },
        "tags": [
            {"name": "OpenAI API", "description": "OpenAI's endpoints, OpenAI's request and answer shapes."},
            {"name": "Anthropic API", "description": "Anthropic's Messages API."},
            {"name": "Health", "description": "Probes for orchestrators; no key needed."},
            {"name": "Admin: keys", "description": "Virtual keys with limits and budgets (the master key)."},
            {"name": "Admin: teams", "description": "Teams whose limits and budgets bind the sum of their keys."},
            {"name": "Auth", "description": "Seed 001's authentication endpoints."},
            {"name": "Operator", "description": "Routing stats, health, rate limits and providers (ops keys)."},
            {"name": "Analytics", "description": "Usage, requests and models (seed 003); /user/stats (seed 004)."},
        ],
        "security": [{BEARER: []}, {API_KEY: []}],
        "paths": paths,
        "components": _components(ops),
    }


@functools.cache
def document_json() -> bytes:
    """The document, built once per process, at the first request for it (not at import)."""
    return orjson.dumps(document())


# --- serving ----------------------------------------------------------------------------------------


async def _openapi_json(_: Request) -> Response:
    return RawJSONResponse(document_json())


async def _swagger_ui(_: Request) -> Response:
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - Swagger UI")


async def _redoc(_: Request) -> Response:
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - ReDoc")


def install(api: FastAPI) -> None:
    """Serve the document and its readers on ``api``, whose own (``openapi_url`` and the rest) must be
    off: FastAPI's document would describe only the routes it dispatches."""
    assert api.openapi_url is None, "FastAPI's own /openapi.json would shadow this one"
    api.router.routes.extend(
        [
            Route(OPENAPI_URL, _openapi_json, methods=["GET"], include_in_schema=False),
            Route(DOCS_URL, _swagger_ui, methods=["GET"], include_in_schema=False),
            Route(REDOC_URL, _redoc, methods=["GET"], include_in_schema=False),
        ]
    )
