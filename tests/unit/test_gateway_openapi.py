"""The OpenAPI document (``gateway.openapi``) and its readers: every route the gateway serves is in
it, with its request body, answers, errors and auth, and the document is valid OpenAPI 3.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import httpx
import jsonschema
import pytest
from fastapi.openapi.models import OpenAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import Route

from common.settings import GatewaySettings
from gateway import openapi, openapi_admin
from gateway.anthropic.schemas import MessagesRequest
from gateway.app import create_api, create_app
from gateway.deps import Gateway
from gateway.keyring import Keyring
from gateway.routes import generate

ERRORS = ("400", "401", "404", "413", "429", "500", "502", "503", "504")
STREAMING = {"/v1/chat/completions", "/v1/completions", "/v1/messages"}
UNAUTHENTICATED = {"/health", "/ready", "/", "/backend/info"}
BODIES: dict[str, type[BaseModel]] = {e.path: e.schema for e in generate.ENDPOINTS} | {"/v1/messages": MessagesRequest}
ADMIN_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/admin/keys", "post"): openapi_admin.KeyCreate,
    ("/admin/keys/{key_id}", "patch"): openapi_admin.KeyUpdate,
    ("/admin/keys/{key_id}/rotate", "post"): openapi_admin.KeyRotate,
    ("/admin/teams", "post"): openapi_admin.TeamCreate,
    ("/admin/teams/{team_id}", "patch"): openapi_admin.TeamUpdate,
}
CREATED = {("/admin/keys", "post"), ("/admin/teams", "post")}


@pytest.fixture
def gateway() -> Gateway:
    unused: Any = None  # documentation needs neither the router nor NATS
    settings = GatewaySettings(api_keys="sk-test-0123456789")
    return Gateway(settings, Keyring(settings, []), unused, unused, unused)


@pytest.fixture
def client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return cast(dict[str, Any], response.json())


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return cast(dict[str, Any], node)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


@pytest.mark.parametrize(("path", "reader"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
async def test_the_docs_pages_read_the_document(client: httpx.AsyncClient, path: str, reader: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text
    assert reader in response.text


async def test_the_document_is_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    OpenAPI.model_validate(doc)  # FastAPI's model of the OpenAPI 3.1 object tree
    for name, schema in doc["components"]["schemas"].items():
        assert "__" not in name, f"{name}: two models share a name and pydantic mangled it"
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in refs(doc):
        assert ref.startswith("#/components/"), ref
        resolve(doc, ref)


async def test_every_route_the_gateway_serves_is_documented_and_nothing_else(
    gateway: Gateway, doc: dict[str, Any]
) -> None:
    routes = create_api(gateway).routes
    # FastAPI's own routes, as FastAPI lists them (its included routers are wrapped, not plain routes),
    fastapi_paths = get_openapi(title="routes", version="0", routes=routes)["paths"]
    served = {(path, method) for path, item in fastapi_paths.items() for method in item}
    # and the plain Starlette routes: the fast lane's (and the docs', which leave themselves out).
    served |= {
        (route.path_format, method.lower())
        for route in routes
        if isinstance(route, Route) and route.include_in_schema
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == served
    # The endpoints clients come for, which FastAPI's own document used to leave out.
    assert {
        ("/v1/chat/completions", "post"),
        ("/v1/completions", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/images/generations", "post"),
        ("/v1/messages", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model_id}", "get"),
        ("/health", "get"),
        ("/ready", "get"),
    } <= documented


async def test_every_operation_documents_its_answer_and_auth(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"}
    assert schemes["apiKeyAuth"]["in"] == "header" and schemes["apiKeyAuth"]["name"] == "x-api-key"
    for path, method, operation in operations(doc):
        assert operation["operationId"] and operation["summary"]
        created = (path, method) in CREATED
        assert ("201" in operation["responses"]) is created and ("200" in operation["responses"]) is not created
        ok = operation["responses"]["201" if created else "200"]["content"]
        resolve(doc, ok["application/json"]["schema"]["$ref"])
        assert ("text/event-stream" in ok) == (path in STREAMING), path
        if path in UNAUTHENTICATED:
            assert operation["security"] == [], path
        else:
            assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}], path
            assert "401" in operation["responses"], path


async def test_request_bodies_are_the_models_that_validate_them(doc: dict[str, Any]) -> None:
    posts = {path: operation for path, method, operation in operations(doc) if method == "post"}
    assert set(BODIES) <= set(posts)
    with_body = {(path, method) for path, method, operation in operations(doc) if "requestBody" in operation}
    assert with_body == {(path, "post") for path in BODIES} | ADMIN_BODIES.keys()
    for (path, method), model in ADMIN_BODIES.items():
        schema = resolve(
            doc, doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        assert set(schema["properties"]) == set(model.model_fields), path
        assert schema["additionalProperties"] is False, path  # accounting refuses unknown fields
    for path, model in BODIES.items():
        body = posts[path]["requestBody"]
        assert body["required"] is True
        schema = resolve(doc, body["content"]["application/json"]["schema"]["$ref"])
        assert set(schema["properties"]) == set(model.model_fields), path
        assert set(schema["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}, path
    # Unknown parameters pass through to the provider, except on Anthropic's API, which refuses them.
    assert resolve(doc, "#/components/schemas/ChatCompletionRequest")["additionalProperties"] is True
    assert resolve(doc, "#/components/schemas/AnthropicMessagesRequest")["additionalProperties"] is False


async def test_generating_endpoints_document_their_errors_in_their_own_shape(doc: dict[str, Any]) -> None:
    for path in BODIES:
        shape = "AnthropicErrorResponse" if path == "/v1/messages" else "ErrorResponse"
        responses = doc["paths"][path]["post"]["responses"]
        assert set(ERRORS) <= set(responses), path
        for status in ERRORS:
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": f"#/components/schemas/{shape}"}, (path, status)
            # The example is what the gateway would send; it must fit the schema it illustrates.
            jsonschema.validate(content["example"], content["schema"] | {"components": doc["components"]})
        assert "Retry-After" in responses["429"]["headers"]
        assert "x-request-id" in responses["200"]["headers"]


async def test_the_document_is_built_once_at_the_first_request_for_it(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    openapi.document_json.cache_clear()
    builds = []

    def counted() -> dict[str, Any]:
        builds.append(1)
        return real()

    real = openapi.document
    monkeypatch.setattr(openapi, "document", counted)
    try:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")
        assert builds == []  # not when the app is made
        first = await client.get("/openapi.json")
        second = await client.get("/openapi.json")
        assert first.content == second.content
        assert builds == [1]
    finally:
        openapi.document_json.cache_clear()


async def test_answers_document_their_router_metadata_and_costs(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for answer in ("ChatCompletion", "ChatCompletionChunk", "Completion", "CreateEmbeddingResponse"):
        assert "router_metadata" in schemas[answer]["properties"], answer
    assert {"selected_provider", "selected_model", "deployment_id", "strategy", "prompt_class", "reason"} <= set(
        schemas["RouterMetadata"]["properties"]
    )
    for usage in ("CompletionUsage", "EmbeddingUsage"):
        assert {"input_cost_usd", "output_cost_usd", "total_cost_usd"} <= set(schemas[usage]["properties"]), usage
