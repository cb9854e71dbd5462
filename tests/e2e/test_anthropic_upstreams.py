"""The official Anthropic SDK against POST /v1/messages, routed to an OpenAI-format upstream and to an
Anthropic-format one: text, streamed text, a tool call round trip (plain and streamed) and an
overloaded upstream, through the four services running as processes.

The upstreams are the provider conformance suite's fake servers (real sockets, recorded fixtures of
``tests/contract/story.py``). Each case checks both ends: what the SDK got back, and what the upstream
received in its own format, so a request that skipped a translation (either way) fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anthropic
import pytest
import yaml
from anthropic.types import MessageParam, ToolParam

from common.providers.base import Usage
from tests.contract.server import Answer, Fail, Received, UpstreamServer
from tests.contract.story import (
    QUESTION,
    REPLY,
    REPLY_PIECES,
    REPLY_USAGE,
    TOOL_ANSWER,
    TOOL_ANSWER_USAGE,
    TOOL_ARGUMENTS,
    TOOL_CALL_USAGE,
    TOOL_NAME,
    TOOL_OUTPUT,
    WEATHER_QUESTION,
    WEATHER_TOOL,
    load_fixture,
)
from tests.contract.upstreams import wire_of
from tests.e2e.conftest import KEY
from tests.e2e.helpers import (
    OwnStack,
    blocks_of,
    one_usage_row,
    own_stack,
    stream,
    text_of,
    tool_use_of,
    usage_seen,
)

pytestmark = pytest.mark.e2e

KEY_ID = "e2e-anthropic-upstreams"
SYSTEM = "Answer in one sentence."
MAX_TOKENS = 256
PRICE: dict[str, float] = {"prompt_per_1k": 0.003, "completion_per_1k": 0.015}
OVERLOADED = "The upstream is overloaded right now."

# The story's weather tool as a client of the Messages API declares it.
_WEATHER_FUNCTION = cast(dict[str, Any], WEATHER_TOOL["function"])
WEATHER_TOOL_PARAM: ToolParam = {
    "name": _WEATHER_FUNCTION["name"],
    "description": _WEATHER_FUNCTION["description"],
    "input_schema": _WEATHER_FUNCTION["parameters"],
}


# --- how each upstream's format says what the checks look for ---------------------------------------


@dataclass(frozen=True)
class Dialect:
    provider: str  # the adapter, the fixtures' directory and the usage row's provider
    path: str
    auth_headers: Callable[[str], Mapping[str, str]]  # the headers an upstream key travels in
    overloaded_status: int  # how this provider says "overloaded"
    tools: list[dict[str, Any]]  # the weather tool in the provider's own format
    tool_choice_auto: Any
    prompt: Callable[[dict[str, Any]], tuple[Any, list[dict[str, Any]]]]  # (system, turns) of a body
    # The turns the second leg must arrive as: (assistant's text or None, tool call id) -> turns.
    tool_conversation: Callable[[str | None, str], list[dict[str, Any]]]
    tool_call: Callable[[], tuple[str | None, str]]  # (text before the call, call id) in its fixture


def _openai_prompt(body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """System prompt and turns; tool-call arguments decoded, since their JSON spacing is no contract."""
    messages = [dict(m) for m in body["messages"]]
    for message in messages:
        if "tool_calls" in message:
            message["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in message["tool_calls"]
            ]
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _openai_tool_conversation(text: str | None, call_id: str) -> list[dict[str, Any]]:
    call = {"id": call_id, "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}}
    return [
        {"role": "user", "content": WEATHER_QUESTION},
        {"role": "assistant", "content": text, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_OUTPUT},
    ]


def _openai_tool_call() -> tuple[str | None, str]:
    message = load_fixture("openai", "tool_call")["choices"][0]["message"]
    return message["content"], message["tool_calls"][0]["id"]


def _anthropic_prompt(body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    return body.get("system"), body["messages"]


def _anthropic_tool_conversation(text: str | None, call_id: str) -> list[dict[str, Any]]:
    said = [{"type": "text", "text": text}] if text else []
    call = {"type": "tool_use", "id": call_id, "name": TOOL_NAME, "input": TOOL_ARGUMENTS}
    return [
        {"role": "user", "content": WEATHER_QUESTION},
        {"role": "assistant", "content": [*said, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": TOOL_OUTPUT}]},
    ]


def _anthropic_tool_call() -> tuple[str | None, str]:
    content = load_fixture("anthropic", "tool_call")["content"]
    text = "".join(b["text"] for b in content if b["type"] == "text")
    return text or None, next(b["id"] for b in content if b["type"] == "tool_use")


DIALECTS = {
    "openai": Dialect(
        provider="openai",
        path="/v1/chat/completions",
        auth_headers=lambda key: {"authorization": f"Bearer {key}"},
        overloaded_status=503,
        tools=[WEATHER_TOOL],
        tool_choice_auto="auto",
        prompt=_openai_prompt,
        tool_conversation=_openai_tool_conversation,
        tool_call=_openai_tool_call,
    ),
    "anthropic": Dialect(
        provider="anthropic",
        path="/v1/messages",
        auth_headers=lambda key: {"x-api-key": key, "anthropic-version": "2023-06-01"},
        overloaded_status=529,
        tools=[dict(WEATHER_TOOL_PARAM)],
        tool_choice_auto={"type": "auto"},
        prompt=_anthropic_prompt,
        tool_conversation=_anthropic_tool_conversation,
        tool_call=_anthropic_tool_call,
    ),
}
# Public model -> (upstream format, upstream model).
MODELS = {"claude-via-openai": ("openai", "gpt-4o-mini"), "claude-native": ("anthropic", "claude-sonnet-4-5")}


@dataclass(frozen=True)
class Route:
    model: str
    deployment_id: str
    upstream_model: str
    upstream_key: str
    dialect: Dialect
    server: UpstreamServer
    client: anthropic.Anthropic
    database_url: str

    def only_request(self) -> Received:
        assert len(self.server.received) == 1, [r.path for r in self.server.received]
        received = self.server.received[0]
        assert received.path == self.dialect.path
        assert received.model == self.upstream_model
        # The upstream's key, never the client's.
        assert self.dialect.auth_headers(self.upstream_key).items() <= received.headers.items()
        assert all(KEY not in value for value in received.headers.values())
        return received

    async def check_usage_row(self, request_id: str, usage: Usage, *, stream: bool) -> None:
        row = await one_usage_row(self.database_url, request_id)
        assert (row["status"], row["http_status"], row["attempts"]) == ("success", 200, 1)
        assert (row["endpoint"], row["stream"], row["key_id"]) == ("/v1/messages", stream, KEY_ID)
        assert (row["requested_model"], row["deployment_id"]) == (self.model, self.deployment_id)
        assert (row["provider"], row["upstream_model"]) == (self.dialect.provider, self.upstream_model)
        tokens = (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["total_tokens"])
        assert tokens == (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.total_tokens)
        cost = (
            usage.prompt_tokens * PRICE["prompt_per_1k"] + usage.completion_tokens * PRICE["completion_per_1k"]
        ) / 1000
        assert float(row["cost_usd"]) == pytest.approx(cost)
        if stream:
            assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


# --- the stack --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstreams:
    servers: Mapping[str, UpstreamServer]  # by provider
    keys: Mapping[str, str]  # the key each upstream expects, by provider


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = {provider: UpstreamServer(wire_of(provider)) for provider in DIALECTS}
    for server in servers.values():
        server.start()
    try:
        yield Upstreams(servers, {p: f"sk-upstream-{p}-{uuid.uuid4().hex}" for p in DIALECTS})
    finally:
        for server in servers.values():
            server.stop()


def _key_env(provider: str) -> str:
    return f"MR_E2E_{provider.upper()}_UPSTREAM_KEY"


@dataclass(frozen=True)
class Deployed:
    stack: OwnStack
    deployment_ids: Mapping[str, str]  # by public model
    client: anthropic.Anthropic


@pytest.fixture(scope="module")
def deployed(
    upstreams: Upstreams, redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    suffix = uuid.uuid4().hex[:8]
    deployment_ids = {model: f"{model}-{suffix}" for model in MODELS}
    config = {
        "providers": {
            f"{p}-upstream": {"adapter": p, "base_url": upstreams.servers[p].base_url, "api_key_env": _key_env(p)}
            for p in DIALECTS
        },
        "deployments": [
            {
                "id": deployment_ids[model],
                "model": model,
                "provider": f"{provider}-upstream",
                "upstream_model": upstream_model,
                "price": PRICE,
            }
            for model, (provider, upstream_model) in MODELS.items()
        ],
        "keys": [{"key": KEY, "id": KEY_ID}],
        # The overloaded cases must not cool a deployment down for the cases after them.
        "health": {"failure_threshold": 1000, "cooldown_s": 1},
    }
    with (
        own_stack(
            yaml.safe_dump(config),
            redis_url=redis_url,
            nats_url=nats_url,
            database_url=database_url,
            workdir=Path(tmp_path_factory.mktemp("anthropic-upstreams")),
            env={_key_env(p): key for p, key in upstreams.keys.items()},
        ) as stack,
        anthropic.Anthropic(base_url=stack.base_url, api_key=KEY, max_retries=0, timeout=30) as client,
    ):
        yield Deployed(stack, deployment_ids, client)


@pytest.fixture(params=list(MODELS))
def route(request: pytest.FixtureRequest, deployed: Deployed, upstreams: Upstreams) -> Route:
    model: str = request.param
    provider, upstream_model = MODELS[model]
    server = upstreams.servers[provider]
    server.reset()
    return Route(
        model=model,
        deployment_id=deployed.deployment_ids[model],
        upstream_model=upstream_model,
        upstream_key=upstreams.keys[provider],
        dialect=DIALECTS[provider],
        server=server,
        client=deployed.client,
        database_url=deployed.stack.database_url,
    )


# --- the cases --------------------------------------------------------------------------------------


def anthropic_usage(usage: Usage) -> tuple[int, int, int]:
    """(input, output, cache read) tokens as Anthropic counts a story's usage: cache reads apart."""
    return usage.prompt_tokens - usage.cached_tokens, usage.completion_tokens, usage.cached_tokens


async def test_create_text(route: Route) -> None:
    question: list[MessageParam] = [{"role": "user", "content": QUESTION}]
    raw = route.client.messages.with_raw_response.create(
        model=route.model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=question
    )
    message = raw.parse()
    assert message.id == raw.headers["request-id"]
    assert (message.type, message.role, message.model) == ("message", "assistant", route.model)
    assert [block.type for block in message.content] == ["text"] and text_of(message) == REPLY
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert usage_seen(message) == anthropic_usage(REPLY_USAGE)

    received = route.only_request()
    assert not received.stream and received.body["max_tokens"] == MAX_TOKENS
    assert route.dialect.prompt(received.body) == (SYSTEM, [{"role": "user", "content": QUESTION}])
    await route.check_usage_row(message.id, REPLY_USAGE, stream=False)


async def test_stream_text(route: Route) -> None:
    events, message = stream(
        route.client,
        model=route.model,
        max_tokens=MAX_TOKENS,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    )
    [block] = blocks_of(events)
    assert block.block.type == "text"
    assert [(d.type, d.text) for d in block.deltas] == [("text_delta", piece) for piece in REPLY_PIECES]
    assert message.model == route.model and text_of(message) == REPLY
    assert message.stop_reason == "end_turn"
    assert usage_seen(message) == anthropic_usage(REPLY_USAGE)

    received = route.only_request()
    assert received.stream
    assert route.dialect.prompt(received.body) == (SYSTEM, [{"role": "user", "content": QUESTION}])
    await route.check_usage_row(message.id, REPLY_USAGE, stream=True)


WEATHER: list[MessageParam] = [{"role": "user", "content": WEATHER_QUESTION}]


async def test_tool_call_round_trip(route: Route) -> None:
    said, call_id = route.dialect.tool_call()
    route.server.reset(Answer("tool_call"))
    first = route.client.messages.create(
        model=route.model,
        max_tokens=MAX_TOKENS,
        messages=WEATHER,
        tools=[WEATHER_TOOL_PARAM],
        tool_choice={"type": "auto"},
    )
    call = tool_use_of(first)
    assert (call.id, call.name, call.input) == (call_id, TOOL_NAME, TOOL_ARGUMENTS)
    assert first.content[-1] == call and text_of(first) == said
    assert first.stop_reason == "tool_use"
    assert usage_seen(first) == anthropic_usage(TOOL_CALL_USAGE)
    asked = route.only_request()
    assert asked.body["tools"] == route.dialect.tools
    assert asked.body["tool_choice"] == route.dialect.tool_choice_auto
    assert route.dialect.prompt(asked.body) == (None, [{"role": "user", "content": WEATHER_QUESTION}])
    await route.check_usage_row(first.id, TOOL_CALL_USAGE, stream=False)

    # The client runs the tool and sends its result back with the conversation so far.
    route.server.reset(Answer("tool_result"))
    answer = route.client.messages.create(
        model=route.model,
        max_tokens=MAX_TOKENS,
        messages=[
            *WEATHER,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": TOOL_OUTPUT}]},
        ],
        tools=[WEATHER_TOOL_PARAM],
    )
    assert [block.type for block in answer.content] == ["text"] and text_of(answer) == TOOL_ANSWER
    assert answer.stop_reason == "end_turn"
    assert usage_seen(answer) == anthropic_usage(TOOL_ANSWER_USAGE)
    told = route.only_request()
    assert told.tool_results == [(call_id, TOOL_OUTPUT)]
    assert route.dialect.prompt(told.body) == (None, route.dialect.tool_conversation(said, call_id))
    await route.check_usage_row(answer.id, TOOL_ANSWER_USAGE, stream=False)


async def test_streamed_tool_call(route: Route) -> None:
    said, call_id = route.dialect.tool_call()
    route.server.reset(Answer("tool_call"))
    events, message = stream(
        route.client,
        model=route.model,
        max_tokens=MAX_TOKENS,
        messages=WEATHER,
        tools=[WEATHER_TOOL_PARAM],
        tool_choice={"type": "auto"},
    )
    *texts, tool = blocks_of(events)
    assert "".join(d.text for block in texts for d in block.deltas) == (said or "")
    assert (tool.block.type, tool.block.id, tool.block.name, tool.block.input) == ("tool_use", call_id, TOOL_NAME, {})
    assert {d.type for d in tool.deltas} == {"input_json_delta"} and len(tool.deltas) > 1
    assert json.loads("".join(d.partial_json for d in tool.deltas)) == TOOL_ARGUMENTS
    call = tool_use_of(message)
    assert (call.id, call.input) == (call_id, TOOL_ARGUMENTS)
    assert message.stop_reason == "tool_use"
    assert usage_seen(message) == anthropic_usage(TOOL_CALL_USAGE)

    asked = route.only_request()
    assert asked.stream and asked.body["tools"] == route.dialect.tools
    await route.check_usage_row(message.id, TOOL_CALL_USAGE, stream=True)


async def test_overloaded_upstream_is_503_overloaded_error(route: Route) -> None:
    route.server.reset(Fail(route.dialect.overloaded_status, OVERLOADED))
    with pytest.raises(anthropic.ServiceUnavailableError) as plain:
        route.client.messages.create(model=route.model, max_tokens=MAX_TOKENS, messages=WEATHER)
    route.only_request()  # one deployment: nothing to fail over to, and no second try
    route.server.reset(Fail(route.dialect.overloaded_status, OVERLOADED))
    with pytest.raises(anthropic.ServiceUnavailableError) as streamed:
        stream(route.client, model=route.model, max_tokens=MAX_TOKENS, messages=WEATHER)
    route.only_request()

    for err, is_stream in ((plain.value, False), (streamed.value, True)):
        # Anthropic's error shape, the upstream's words kept for the client.
        request_id = err.response.headers["request-id"]
        assert err.status_code == 503 and isinstance(err.body, dict)
        message = err.body["error"]["message"]
        assert err.body == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message},
            "request_id": request_id,
        }
        assert OVERLOADED in message
        row = await one_usage_row(route.database_url, request_id)
        assert (row["status"], row["http_status"], row["stream"]) == ("error", 503, is_stream)
        assert (row["deployment_id"], row["provider"]) == (route.deployment_id, route.dialect.provider)
        assert row["completion_tokens"] == 0
