"""Numbers the services cannot hold (NaN, Infinity, 1e400, integers beyond 64 bits), sent to the
four running services: each is a 400 from the gateway naming the field, in the endpoint's own error
shape, and one usage row records it as the client's error (400), not a deployment's. Before, such a
body was routed and failed at a worker ("The request body must be a JSON object"), went upstream
changed (a big integer read as a float), or was a 500 (/v1/messages)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import KEY, RunningStack
from tests.e2e.test_spine import one_row

pytestmark = pytest.mark.e2e

HI = '"messages": [{"role": "user", "content": "hi"}]'
BIG = "18446744073709551616"  # 2**64
BELOW = "-9223372036854775809"  # -2**63 - 1


async def assert_refused_and_accounted(stack: RunningStack, request_id: str, endpoint: str) -> None:
    row = await one_row(stack, request_id)
    assert row["status"] == "error" and row["http_status"] == 400
    assert row["error_type"] == "invalid_request_error" and row["endpoint"] == endpoint
    assert row["deployment_id"] is None and row["attempts"] == 0  # never routed: no deployment's fault
    assert row["key_id"] == "e2e-team"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", '{"model": "demo", ' + HI + ', "foo": 1e400}', "foo"),
        (
            "/v1/chat/completions",
            '{"model": "demo", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": NaN}]}]}',
            "messages.0.content.0.x",
        ),
        ("/v1/chat/completions", '{"model": "demo", ' + HI + ', "max_tokens": ' + BIG + "}", "max_tokens"),
        ("/v1/chat/completions", '{"model": "demo", ' + HI + ', "seed": ' + BELOW + "}", "seed"),
        (
            "/v1/chat/completions",
            '{"model": "demo", ' + HI + ', "tools": [{"type": "function", "function": {"name": "f", '
            '"parameters": {"type": "integer", "maximum": ' + BIG + "}}}]}",
            "tools.0.function.parameters.maximum",
        ),
        ("/v1/completions", '{"model": "demo", "prompt": [1, ' + BIG + "]}", "prompt.1"),
        ("/v1/completions", '{"model": "demo", "prompt": "hi", "foo": {"bar": -Infinity}}', "foo.bar"),
        ("/v1/embeddings", '{"model": "embed", "input": [[1, ' + BELOW + "]]}", "input.0.1"),
        ("/v1/images/generations", '{"model": "image", "prompt": "an otter", "foo": [Infinity]}', "foo.0"),
    ],
)
async def test_openai_endpoints_refuse_them_naming_the_field(
    running_stack: RunningStack, path: str, body: str, param: str
) -> None:
    async with httpx.AsyncClient(base_url=running_stack.base_url) as http:
        response = await http.post(
            path, content=body.encode(), headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"].startswith(f"Invalid value for '{param}': ")
    await assert_refused_and_accounted(running_stack, response.headers["x-request-id"], path)


async def test_the_openai_sdk_sending_a_big_integer_is_told_which_field(running_stack: RunningStack) -> None:
    # The SDK writes Python's integers as they are (it refuses NaN and infinities itself).
    with pytest.raises(openai.BadRequestError) as err:
        running_stack.client().chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], extra_body={"metadata_score": 2**70}
        )
    assert err.value.param == "metadata_score" and err.value.code == "invalid_value"
    await assert_refused_and_accounted(
        running_stack, err.value.response.headers["x-request-id"], "/v1/chat/completions"
    )


async def test_messages_max_tokens_beyond_64_bits_is_an_anthropic_400(running_stack: RunningStack) -> None:
    client = anthropic.Anthropic(base_url=running_stack.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model="demo",
            max_tokens=2**64,
            messages=[{"role": "user", "content": "hi"}],
            timeout=10,  # with a timeout of its own, the SDK does not insist on streaming
        )
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Input should be less than or equal to 2147483647",
    }
    await assert_refused_and_accounted(running_stack, err.value.response.headers["request-id"], "/v1/messages")


async def test_messages_number_in_a_tool_input_is_an_anthropic_400_naming_it(running_stack: RunningStack) -> None:
    body = (
        '{"model": "demo", "max_tokens": 16, "messages": [{"role": "user", "content": "weather?"}, '
        '{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"days": 1e400}}]}, '
        '{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}]}'
    )
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=running_stack.base_url) as http:
        response = await http.post("/v1/messages", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("messages.1.content.0.input.days: ")
    await assert_refused_and_accounted(running_stack, response.headers["request-id"], "/v1/messages")
