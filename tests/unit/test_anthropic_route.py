"""POST /v1/messages at the HTTP edge, driven by the official Anthropic SDK: authentication, body
limits and validation answer in Anthropic's error shape. Nothing here reaches routing (the e2e
suite covers the dispatched path)."""

from __future__ import annotations

from typing import Any, cast

import anthropic
import httpx2
import pytest

from common.config import KeyConfig
from common.settings import GatewaySettings
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.keyring import Keyring
from tests.unit.test_gateway_edge import RecordsRejections

KEY = "sk-test-0123456789"
HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def dispatcher() -> RecordsRejections:
    return RecordsRejections()


@pytest.fixture
def app(dispatcher: RecordsRejections) -> Any:
    settings = GatewaySettings(api_keys=KEY, max_body_bytes=2048)
    keys = Keyring(settings, [KeyConfig(key="config-key-123", id="team-a")])
    unreachable: Any = None  # routing is never reached by these requests
    return create_app(Gateway(settings, keys, unreachable, cast(Any, dispatcher), unreachable))


def client(app: Any, **auth: str) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
    return anthropic.AsyncAnthropic(base_url="http://gw", max_retries=0, http_client=http, **auth)  # type: ignore[arg-type]


def assert_anthropic_error(err: anthropic.APIStatusError, status: int, error_type: str) -> str:
    assert err.status_code == status
    body = err.body
    assert isinstance(body, dict) and set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert body["request_id"] == err.response.headers["request-id"] == err.request_id
    return str(body["error"]["message"])


async def test_missing_key_is_an_anthropic_authentication_error(app: Any) -> None:
    with pytest.raises(anthropic.AuthenticationError) as err:
        # An empty x-api-key is what a client without a key sends.
        await client(app, api_key="").messages.create(model="demo", max_tokens=8, messages=HELLO)
    assert "API key" in assert_anthropic_error(err.value, 401, "authentication_error")


async def test_wrong_key_is_401_and_not_echoed(app: Any) -> None:
    wrong = "sk-wrong-key-0000000000"
    with pytest.raises(anthropic.AuthenticationError) as err:
        await client(app, api_key=wrong).messages.create(model="demo", max_tokens=8, messages=HELLO)
    assert wrong not in assert_anthropic_error(err.value, 401, "authentication_error")


@pytest.mark.parametrize("auth", [{"api_key": KEY}, {"api_key": "config-key-123"}, {"auth_token": KEY}])
async def test_x_api_key_and_bearer_get_past_auth(app: Any, auth: dict[str, str]) -> None:
    # Past auth, a parameter with no chat-completions equivalent is the next thing to fail.
    with pytest.raises(anthropic.BadRequestError) as err:
        # top_k and temperature are no longer in this SDK's signature; older clients send them.
        await client(app, **auth).messages.create(
            model="demo", max_tokens=8, messages=HELLO, extra_body={"temperature": 0.5, "top_k": 5}
        )
    assert assert_anthropic_error(err.value, 400, "invalid_request_error").startswith("top_k: ")


async def test_sdk_built_request_with_tools_and_images_validates(app: Any) -> None:
    # Everything below is accepted; only the unsupported thinking setting is refused, after parsing.
    messages: list[anthropic.types.MessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat", "is_error": False}],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as err:
        await client(app, api_key=KEY).messages.create(
            model="demo",
            max_tokens=8,
            system=[{"type": "text", "text": "Be brief."}],
            messages=messages,
            tools=[{"name": "look", "description": "Look closer", "input_schema": {"type": "object"}}],
            tool_choice={"type": "auto"},
            stop_sequences=["END"],
            metadata={"user_id": "u1"},
            thinking={"type": "enabled", "budget_tokens": 2048},
        )
    assert assert_anthropic_error(err.value, 400, "invalid_request_error").startswith("thinking: ")


async def test_unknown_parameter_is_400_naming_it(app: Any) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        await client(app, api_key=KEY).messages.create(
            model="demo", max_tokens=8, messages=HELLO, extra_body={"frequency_boost": 2}
        )
    assert (
        assert_anthropic_error(err.value, 400, "invalid_request_error")
        == "frequency_boost: Extra inputs are not permitted"
    )


async def test_body_over_the_limit_is_413_request_too_large(app: Any) -> None:
    big: list[anthropic.types.MessageParam] = [{"role": "user", "content": "x" * 4096}]
    with pytest.raises(anthropic.APIStatusError) as err:
        await client(app, api_key=KEY).messages.create(model="demo", max_tokens=8, messages=big)
    assert_anthropic_error(err.value, 413, "request_too_large")


async def test_malformed_json_is_400_in_anthropic_shape(app: Any) -> None:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.post("/v1/messages", content=b'{"model": ', headers={"x-api-key": KEY})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == "The request body is not valid JSON."


async def test_max_tokens_beyond_64_bits_is_400_naming_it_and_accounted(
    app: Any, dispatcher: RecordsRejections
) -> None:
    # It used to be a 500 in OpenAI's shape (orjson: "Integer exceeds 64-bit range"), unaccounted.
    with pytest.raises(anthropic.BadRequestError) as err:
        await client(app, api_key=KEY).messages.create(
            model="demo",
            max_tokens=2**64,
            messages=HELLO,
            timeout=10,  # a timeout: the SDK would insist on streaming
        )
    message = assert_anthropic_error(err.value, 400, "invalid_request_error")
    assert message == "max_tokens: Input should be less than or equal to 2147483647"
    [(call, error)] = dispatcher.rejected
    assert call.request_id == err.value.request_id and call.endpoint == "/v1/messages" and error.status == 400


async def test_a_number_no_worker_can_hold_is_400_naming_its_path(app: Any, dispatcher: RecordsRejections) -> None:
    body = (
        b'{"model": "demo", "max_tokens": 8, "messages": [{"role": "assistant", "content": '
        b'[{"type": "tool_use", "id": "t1", "name": "f", "input": {"x": [1, 1e400]}}]}]}'
    )
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.post("/v1/messages", content=body, headers={"x-api-key": KEY})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("messages.0.content.0.input.x.1: ")
    assert len(dispatcher.rejected) == 1


async def test_refusals_before_dispatch_are_accounted_once(app: Any, dispatcher: RecordsRejections) -> None:
    with pytest.raises(anthropic.BadRequestError):  # refused while translating, after parsing
        await client(app, api_key=KEY).messages.create(
            model="demo", max_tokens=8, messages=HELLO, extra_body={"top_k": 5}
        )
    with pytest.raises(anthropic.AuthenticationError):  # not authenticated: nobody to account to
        await client(app, api_key="").messages.create(model="demo", max_tokens=8, messages=HELLO)
    [(call, error)] = dispatcher.rejected
    assert call.key_id.startswith("key_") and error.param == "top_k"
