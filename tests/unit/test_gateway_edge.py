"""The HTTP edge before any routing: auth, body limits, validation, error shape, SSE framing.
Nothing here reaches the router or NATS (those parts are exercised by the e2e tests)."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest

from common.config import KeyConfig
from common.errors import ModelRouterError
from common.settings import GatewaySettings
from gateway import sse
from gateway.app import create_app
from gateway.call import Call
from gateway.deps import Gateway
from gateway.keyring import Keyring, redact

KEY = "sk-test-0123456789"
BODY = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}'


class RecordsRejections:
    """Stands in for the dispatcher: these requests must be refused before any dispatch."""

    def __init__(self) -> None:
        self.rejected: list[tuple[Call, ModelRouterError]] = []

    def reject(self, call: Call, error: ModelRouterError) -> None:
        self.rejected.append((call, error))


@pytest.fixture
def dispatcher() -> RecordsRejections:
    return RecordsRejections()


@pytest.fixture
def client(dispatcher: RecordsRejections) -> httpx.AsyncClient:
    settings = GatewaySettings(api_keys=f"{KEY}, other-key-xyz", max_body_bytes=1024)
    keys = Keyring(settings, [KeyConfig(key="config-key-123", id="team-a")])
    unreachable: Any = None  # routing is never reached by these requests
    gateway = Gateway(settings, keys, unreachable, cast(Any, dispatcher), unreachable)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return cast(dict[str, Any], body["error"])


async def test_missing_key_is_401(client: httpx.AsyncClient) -> None:
    err = _assert_openai_error(await client.post("/v1/chat/completions", content=BODY), 401)
    assert err["code"] == "missing_api_key"


async def test_wrong_key_is_401_and_not_echoed_in_full(client: httpx.AsyncClient) -> None:
    wrong = "sk-wrong-key-0000000000"
    response = await client.post("/v1/chat/completions", content=BODY, headers={"Authorization": f"Bearer {wrong}"})
    err = _assert_openai_error(response, 401)
    assert err["code"] == "invalid_api_key"
    assert wrong not in err["message"]
    assert redact(wrong) in err["message"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY}, {"Authorization": "Bearer other-key-xyz"}],
)
async def test_accepted_key_forms_get_past_auth(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    # Past auth, an invalid body is the next thing to fail: proof the key was accepted.
    response = await client.post("/v1/chat/completions", content=b"{", headers=headers)
    _assert_openai_error(response, 400)


def test_key_ids_never_contain_the_key() -> None:
    keys = Keyring(GatewaySettings(api_keys=KEY), [KeyConfig(key="config-key-123", id="team-a")])
    assert keys.authenticate(f"Bearer {KEY}", None).key_id.startswith("key_")
    assert KEY not in keys.authenticate(f"Bearer {KEY}", None).key_id
    assert keys.authenticate(None, "config-key-123").key_id == "team-a"


async def test_malformed_json_is_400_and_accounted(client: httpx.AsyncClient, dispatcher: RecordsRejections) -> None:
    response = await client.post("/v1/chat/completions", content=b'{"model": ', headers={"X-Api-Key": KEY})
    err = _assert_openai_error(response, 400)
    assert err["type"] == "invalid_request_error"
    assert "parse the JSON body" in err["message"]
    [(call, error)] = dispatcher.rejected
    assert call.request_id == response.headers["x-request-id"]
    assert call.key_id.startswith("key_") and error.status == 400


async def test_unauthenticated_requests_are_not_accounted(
    client: httpx.AsyncClient, dispatcher: RecordsRejections
) -> None:
    await client.post("/v1/chat/completions", content=b"{")
    assert dispatcher.rejected == []


async def test_missing_messages_names_the_param(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "demo"}, headers={"X-Api-Key": KEY})
    err = _assert_openai_error(response, 400)
    assert err["param"] == "messages"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "demo", "messages": []}, "messages"),
        ({"model": "demo", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "demo", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
async def test_invalid_fields_are_400_naming_them(client: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    err = _assert_openai_error(await client.post("/v1/chat/completions", json=body, headers={"X-Api-Key": KEY}), 400)
    assert err["param"] == param


async def test_stream_options_without_stream_is_400(client: httpx.AsyncClient) -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}
    err = _assert_openai_error(await client.post("/v1/chat/completions", json=body, headers={"X-Api-Key": KEY}), 400)
    assert "stream_options" in err["message"]


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"model": "demo", "messages": [{"role": "user", "content": "' + b"x" * 2000 + b'"}]}'
    response = await client.post("/v1/chat/completions", content=big, headers={"X-Api-Key": KEY})
    _assert_openai_error(response, 413)


async def test_body_over_the_limit_without_content_length_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 100

    response = await client.post("/v1/chat/completions", content=chunks(), headers={"X-Api-Key": KEY})
    _assert_openai_error(response, 413)


async def test_unknown_url_is_404_in_openai_shape(client: httpx.AsyncClient) -> None:
    err = _assert_openai_error(await client.get("/v1/nothing-here", headers={"X-Api-Key": KEY}), 404)
    assert "/v1/nothing-here" in err["message"]


async def test_wrong_method_is_405_in_openai_shape(client: httpx.AsyncClient) -> None:
    _assert_openai_error(await client.get("/v1/chat/completions", headers={"X-Api-Key": KEY}), 405)


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200


def test_sse_frames() -> None:
    assert sse.frame(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse.DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/completions", {"model": "demo"}, "prompt"),
        ("/v1/completions", {"model": "demo", "prompt": "x", "best_of": 99}, "best_of"),
        ("/v1/embeddings", {"model": "e", "input": ""}, "input"),
        ("/v1/embeddings", {"model": "e", "input": []}, "input"),
        ("/v1/embeddings", {"model": "e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/embeddings", {"model": "e", "input": "x", "dimensions": 0}, "dimensions"),
        ("/v1/images/generations", {"model": "i"}, "prompt"),
        ("/v1/images/generations", {"prompt": "otter", "n": 11}, "n"),
        ("/v1/images/generations", {"prompt": "otter", "stream": True}, "stream"),
    ],
)
async def test_other_endpoints_validate_their_bodies(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], needle: str
) -> None:
    err = _assert_openai_error(await client.post(path, json=body, headers={"X-Api-Key": KEY}), 400)
    assert needle in (err["param"] or "") + err["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "foo": 1e400}'),
        ("/v1/completions", b'{"model": "m", "prompt": "x", "foo": 1e400}'),
        ("/v1/embeddings", b'{"model": "m", "input": "x", "foo": 1e400}'),
        ("/v1/images/generations", b'{"prompt": "x", "foo": 1e400}'),
    ],
)
async def test_a_number_no_worker_can_hold_is_400_naming_it_and_accounted(
    client: httpx.AsyncClient, dispatcher: RecordsRejections, path: str, body: bytes
) -> None:
    # Before, it was routed, and the worker's orjson refused it: a deployment's error.
    response = await client.post(path, content=body, headers={"X-Api-Key": KEY})
    err = _assert_openai_error(response, 400)
    assert (
        err["param"] == "foo"
        and err["code"] == "invalid_value"
        and err["message"].startswith("Invalid value for 'foo'")
    )
    [(call, error)] = dispatcher.rejected
    assert call.request_id == response.headers["x-request-id"] and call.endpoint == path and error.status == 400
