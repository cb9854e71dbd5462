"""Every answer says where it went and what it cost: ``router_metadata`` and ``usage.*_cost_usd`` in
the body (whole answers) or the last chunk (streams), ``x-modelrouter-*`` headers, parsed by the
official openai SDK; and the cost it shows is, to the last digit, what accounting stored.

Through the fake provider (``demo``, ``embed``: answers built by the shared builders) and through the
real ``openai`` adapter against an OpenAI-format upstream (``oai``: the upstream's answer passed on).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import KEY, RunningStack
from tests.e2e.helpers import one_usage_row

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Hello there"}]
COSTS = ("input_cost_usd", "output_cost_usd", "total_cost_usd")
ROUTE_HEADERS = (
    "x-modelrouter-selected-provider",
    "x-modelrouter-selected-model",
    "x-modelrouter-deployment-id",
    "x-modelrouter-strategy",
    "x-modelrouter-reason",
    "x-modelrouter-attempts",
)


def exact(value: Any) -> Decimal | None:
    """A cost as the SDK parsed it (a float), back to the decimal it was written as."""
    return None if value is None else Decimal(repr(value))


async def assert_cost_is_the_stored_one(stack: RunningStack, request_id: str, usage: dict[str, Any]) -> Any:
    row = await one_usage_row(stack.database_url, request_id)
    assert row["status"] == "success"
    assert (exact(usage["input_cost_usd"]), exact(usage["output_cost_usd"]), exact(usage["total_cost_usd"])) == (
        row["input_cost_usd"],
        row["output_cost_usd"],
        row["cost_usd"],
    )
    assert row["price_unknown"] is (row["cost_usd"] is None)
    return row


def assert_route(metadata: dict[str, Any], stack: RunningStack, model: str, usage: dict[str, Any]) -> None:
    assert metadata["selected_model"] == model
    assert metadata["deployment_id"] == stack.deployment(model)
    assert metadata["strategy"] and metadata["reason"]
    assert metadata["attempts"] == 1
    assert "prompt_class" in metadata and "selected_provider" in metadata
    assert metadata["estimated_cost"] == usage["total_cost_usd"]


def assert_route_headers(headers: httpx.Headers, stack: RunningStack, model: str) -> None:
    assert all(name in headers for name in ROUTE_HEADERS), dict(headers)
    assert headers["x-modelrouter-selected-model"] == model
    assert headers["x-modelrouter-deployment-id"] == stack.deployment(model)
    assert headers["x-modelrouter-attempts"] == "1"


# --- whole answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["demo", "oai"])
async def test_a_chat_completion_carries_its_route_and_the_stored_cost(running_stack: RunningStack, model: str) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(model=model, messages=HELLO)
    completion = raw.parse()  # the SDK's own model: extra fields are allowed, nothing else changes
    assert completion.usage is not None and completion.usage.total_tokens > 0
    usage = completion.usage.model_extra or {}
    assert set(COSTS) <= set(usage)
    assert_route((completion.model_extra or {})["router_metadata"], running_stack, model, usage)
    assert_route_headers(raw.headers, running_stack, model)

    row = await assert_cost_is_the_stored_one(running_stack, raw.headers["x-request-id"], usage)
    if row["cost_usd"] is not None:
        assert Decimal(raw.headers["x-modelrouter-cost-usd"]) == row["cost_usd"]
        assert Decimal(raw.headers["x-modelrouter-estimated-cost"]) == row["cost_usd"]


@pytest.mark.parametrize("model", ["demo", "oai"])
async def test_a_completion_carries_its_route_and_the_stored_cost(running_stack: RunningStack, model: str) -> None:
    raw = running_stack.client().completions.with_raw_response.create(model=model, prompt="Say hello")
    completion = raw.parse()
    assert completion.usage is not None
    usage = completion.usage.model_extra or {}
    assert_route((completion.model_extra or {})["router_metadata"], running_stack, model, usage)
    assert_route_headers(raw.headers, running_stack, model)
    await assert_cost_is_the_stored_one(running_stack, raw.headers["x-request-id"], usage)


@pytest.mark.parametrize("model", ["embed", "oai"])
async def test_embeddings_carry_their_route_and_the_stored_cost(running_stack: RunningStack, model: str) -> None:
    raw = running_stack.client().embeddings.with_raw_response.create(model=model, input=["one", "two"])
    embeddings = raw.parse()
    assert embeddings.data and len(embeddings.data[0].embedding) > 0  # the SDK still decodes the vectors
    usage = embeddings.usage.model_extra or {}
    assert_route((embeddings.model_extra or {})["router_metadata"], running_stack, model, usage)
    assert_route_headers(raw.headers, running_stack, model)
    row = await assert_cost_is_the_stored_one(running_stack, raw.headers["x-request-id"], usage)
    if model == "embed":  # priced at $0.02 / 1k prompt tokens, nothing for output
        assert row["cost_usd"] == Decimal(row["prompt_tokens"]) * Decimal("0.02") / 1000 > 0


async def test_the_costs_are_written_as_exact_decimals(running_stack: RunningStack) -> None:
    """No binary float in between: the JSON text is the stored decimal itself."""
    async with httpx.AsyncClient(base_url=running_stack.base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        answer = await http.post("/v1/chat/completions", json={"model": "demo", "messages": HELLO})
    assert answer.status_code == 200
    body = json.loads(answer.content, parse_float=Decimal)
    row = await one_usage_row(running_stack.database_url, answer.headers["x-request-id"])
    assert body["usage"]["total_cost_usd"] == row["cost_usd"] > 0
    assert f'"total_cost_usd":{format(row["cost_usd"].normalize(), "f")}'.encode() in answer.content


# --- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["demo", "oai"])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
async def test_the_usage_chunk_of_a_stream_carries_its_route_and_the_stored_cost(
    running_stack: RunningStack, model: str, endpoint: str
) -> None:
    client = running_stack.client()
    options = {"stream": True, "stream_options": {"include_usage": True}}
    if endpoint == "chat":
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, **options)  # type: ignore[call-overload]
    else:
        raw = client.completions.with_raw_response.create(model=model, prompt="Say hello", **options)  # type: ignore[call-overload]
    chunks = list(raw.parse())
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all("router_metadata" not in (c.model_extra or {}) for c in chunks[:-1])
    usage = last.usage.model_extra or {}
    assert_route((last.model_extra or {})["router_metadata"], running_stack, model, usage)
    # The headers left before the answer: the route, and the prompt's estimated cost.
    assert_route_headers(raw.headers, running_stack, model)
    assert "x-modelrouter-cost-usd" not in raw.headers
    await assert_cost_is_the_stored_one(running_stack, raw.headers["x-request-id"], usage)


@pytest.mark.parametrize("model", ["demo", "oai"])
async def test_without_the_usage_chunk_the_finish_chunk_carries_the_route(
    running_stack: RunningStack, model: str
) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(model=model, messages=HELLO, stream=True)
    chunks = list(raw.parse())
    last = chunks[-1]
    assert last.choices and last.choices[0].finish_reason is not None and last.usage is None
    assert all("router_metadata" not in (c.model_extra or {}) for c in chunks[:-1])
    metadata = (last.model_extra or {})["router_metadata"]
    assert metadata["deployment_id"] == running_stack.deployment(model)
    row = await one_usage_row(running_stack.database_url, raw.headers["x-request-id"])
    assert exact(metadata["estimated_cost"]) == row["cost_usd"]


# --- prices: the list's, cached tokens, unknown -------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_cached_prompt_tokens_are_billed_at_the_listed_cached_price(
    running_stack: RunningStack, stream: bool
) -> None:
    """``oai`` has no price of its own: gpt-4o-mini's list price ($0.15 / $0.075 cached / $0.60 per
    1M tokens), and the upstream reports 16 of the prompt's tokens as cached."""
    client = running_stack.client()
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="oai", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        completion_usage = list(raw.parse())[-1].usage
    else:
        raw = client.chat.completions.with_raw_response.create(model="oai", messages=HELLO)
        completion_usage = raw.parse().usage
    assert completion_usage is not None
    usage = completion_usage.model_extra or {}
    prompt, completion = completion_usage.prompt_tokens, completion_usage.completion_tokens
    row = await assert_cost_is_the_stored_one(running_stack, raw.headers["x-request-id"], usage)
    assert row["cached_tokens"] == 16 < prompt
    input_usd = (Decimal(prompt - 16) * Decimal("0.00015") + 16 * Decimal("0.000075")) / 1000
    assert row["input_cost_usd"] == input_usd
    assert row["output_cost_usd"] == Decimal(completion) * Decimal("0.0006") / 1000
    assert row["cost_usd"] == row["input_cost_usd"] + row["output_cost_usd"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_an_unknown_price_is_null_in_the_answer_and_flagged_in_the_row(
    running_stack: RunningStack, stream: bool
) -> None:
    client = running_stack.client()
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="unpriced", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        last = list(raw.parse())[-1]
        completion_usage, metadata = last.usage, (last.model_extra or {})["router_metadata"]
    else:
        raw = client.chat.completions.with_raw_response.create(model="unpriced", messages=HELLO)
        completion = raw.parse()
        completion_usage, metadata = completion.usage, (completion.model_extra or {})["router_metadata"]
    assert completion_usage is not None and completion_usage.total_tokens > 0
    usage = completion_usage.model_extra or {}
    assert [usage[k] for k in COSTS] == [None, None, None]
    assert metadata["estimated_cost"] is None
    assert "x-modelrouter-estimated-cost" not in raw.headers and "x-modelrouter-cost-usd" not in raw.headers

    row = await one_usage_row(running_stack.database_url, raw.headers["x-request-id"])
    assert (row["status"], row["price_unknown"]) == ("success", True)
    assert (row["cost_usd"], row["input_cost_usd"], row["output_cost_usd"]) == (None, None, None)
    assert row["prompt_tokens"] == completion_usage.prompt_tokens  # the tokens are still counted


# --- Anthropic's Messages API -------------------------------------------------------------------


async def test_the_messages_api_carries_the_cost_and_the_route_in_headers(running_stack: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=running_stack.base_url, headers={"x-api-key": KEY}) as http:
        answer = await http.post(
            "/v1/messages",
            json={"model": "demo", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello there"}]},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "message"
    assert_route_headers(answer.headers, running_stack, "demo")
    row = await one_usage_row(running_stack.database_url, answer.headers["request-id"])
    assert Decimal(answer.headers["x-modelrouter-cost-usd"]) == row["cost_usd"] > 0


async def test_a_streamed_message_carries_its_cost_in_message_delta(running_stack: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=running_stack.base_url, headers={"x-api-key": KEY}) as http:
        answer = await http.post(
            "/v1/messages",
            json={
                "model": "demo",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": "Hello there"}],
            },
        )
    assert answer.status_code == 200, answer.text
    assert_route_headers(answer.headers, running_stack, "demo")
    [delta] = [
        json.loads(line.removeprefix("data: "), parse_float=Decimal)
        for line in answer.text.splitlines()
        if line.startswith("data: ") and '"message_delta"' in line
    ]
    row = await one_usage_row(running_stack.database_url, answer.headers["request-id"])
    assert delta["usage"]["cost_usd"] == row["cost_usd"] > 0
