"""OpenAI chat bodies as Anthropic Messages requests: parameter mapping, refused parameters, images,
tools and JSON mode (``workers.providers._anthropic_request``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common.errors import InvalidRequestError
from workers.providers._anthropic_request import DEFAULT_MAX_TOKENS, MessagesRequest, messages_request

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
REPORT_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
    "required": ["city", "temperature"],
}


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "public", "messages": list(messages) or [{"role": "user", "content": "Hi"}], **extra}


def translate(body: dict[str, Any], *, stream: bool = False) -> MessagesRequest:
    return messages_request(body, upstream_model="claude-up", stream=stream)


def sent(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    return translate(body, stream=stream).body


def refused_param(body: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidRequestError) as caught:
        translate(body)
    assert caught.value.status == 400
    return caught.value.param


# --- the basics ------------------------------------------------------------------------------------


def test_a_plain_question() -> None:
    assert sent(chat({"role": "user", "content": "Hi"})) == {
        "model": "claude-up",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert sent(chat(), stream=True)["stream"] is True


def test_system_and_developer_messages_become_the_top_level_system_prompt() -> None:
    one = sent(chat({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}))
    assert one["system"] == "Be brief."
    assert one["messages"] == [{"role": "user", "content": "Hi"}]

    several = sent(
        chat(
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": "Answer in French."},
        )
    )
    assert several["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    assert [m["role"] for m in several["messages"]] == ["user"]


def test_only_system_messages_are_refused() -> None:
    assert refused_param(chat({"role": "system", "content": "Be brief."})) == "messages"


def test_max_tokens_prefers_max_completion_tokens_and_must_be_positive() -> None:
    assert sent(chat(max_tokens=50))["max_tokens"] == 50
    assert sent(chat(max_tokens=50, max_completion_tokens=70))["max_tokens"] == 70
    assert messages_request(chat(), upstream_model="m", stream=False, default_max_tokens=123).body["max_tokens"] == 123
    assert refused_param(chat(max_tokens=0)) == "max_tokens"


def test_sampling_and_stop_sequences() -> None:
    body = sent(chat(temperature=0.3, top_p=0.9, stop="END"))
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.3, 0.9, ["END"])
    assert sent(chat(stop=["a", "b"]))["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in sent(chat(stop=None))


def test_a_temperature_above_anthropics_range_is_refused_not_rescaled() -> None:
    assert sent(chat(temperature=1))["temperature"] == 1
    assert refused_param(chat(temperature=1.5)) == "temperature"


def test_n_above_one_is_refused() -> None:
    assert "n" not in sent(chat(n=1))
    assert refused_param(chat(n=2)) == "n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("logit_bias", {"1734": -100}),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("frequency_penalty", 0.5),
        ("presence_penalty", -0.5),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("web_search_options", {}),
        ("moderation", {"model": "omni-moderation-latest"}),
        ("verbosity", "low"),
        ("functions", [WEATHER_TOOL["function"]]),
        ("function_call", "auto"),
    ],
)
def test_parameters_that_change_the_answer_and_cannot_be_honoured_are_refused(name: str, value: Any) -> None:
    assert refused_param(chat(**{name: value})) == name


def test_those_parameters_at_their_no_op_values_are_accepted_and_not_sent() -> None:
    body = sent(chat(logit_bias={}, logprobs=False, frequency_penalty=0, presence_penalty=0.0, modalities=["text"]))
    for name in ("logit_bias", "logprobs", "frequency_penalty", "presence_penalty", "modalities"):
        assert name not in body


def test_parameters_that_do_not_change_the_answer_are_not_sent() -> None:
    body = sent(
        chat(
            seed=7,
            store=True,
            metadata={"tag": "x"},
            stream_options={"include_usage": True},
            prompt_cache_key="k",
            prediction={"type": "content", "content": "x"},
            service_tier="flex",
        )
    )
    assert set(body) == {"model", "messages", "max_tokens"}


def test_anthropics_own_parameters_pass_through() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = sent(chat(top_k=40, thinking=thinking, service_tier="standard_only"))
    assert (body["top_k"], body["thinking"], body["service_tier"]) == (40, thinking, "standard_only")


def test_user_becomes_metadata_user_id() -> None:
    assert sent(chat(user="user-1234"))["metadata"] == {"user_id": "user-1234"}
    assert sent(chat(user="old", safety_identifier="new"))["metadata"] == {"user_id": "new"}


def test_reasoning_effort_becomes_output_config_effort() -> None:
    assert sent(chat(reasoning_effort="high"))["output_config"] == {"effort": "high"}
    assert refused_param(chat(reasoning_effort="minimal")) == "reasoning_effort"


def test_the_clients_body_is_left_as_it_was() -> None:
    body = chat(
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": None, "tool_calls": [_call("c1", '{"city": "Paris"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        tools=[WEATHER_TOOL],
        response_format={"type": "json_object"},
        user="u",
    )
    before = copy.deepcopy(body)
    translate(body)
    assert body == before


# --- content ---------------------------------------------------------------------------------------


def test_image_parts_become_image_blocks() -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    (message,) = sent(chat({"role": "user", "content": content}))["messages"]
    assert message["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/bmp;base64,Qk0=", "data:image/png,rawbytes", "ftp://example.com/cat.png"],
    ids=["unsupported-type", "not-base64", "other-scheme"],
)
def test_images_anthropic_cannot_take_are_refused(url: str) -> None:
    content = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url}}]
    assert refused_param(chat({"role": "user", "content": content})) == "messages[0].content[1].image_url.url"


def test_other_content_parts_are_refused_by_position() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert refused_param(chat({"role": "user", "content": [audio]})) == "messages[0].content[0]"
    assert refused_param(chat({"role": "function", "name": "f", "content": "x"})) == "messages[0].role"


def test_message_names_are_not_sent() -> None:
    (message,) = sent(chat({"role": "user", "name": "alice", "content": "Hi"}))["messages"]
    assert message == {"role": "user", "content": "Hi"}


# --- tools -----------------------------------------------------------------------------------------


def _call(call_id: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def test_tool_definitions() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert sent(chat(tools=[WEATHER_TOOL, bare]))["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert refused_param(chat(tools=[{"type": "custom", "custom": {"name": "x"}}])) == "tools[0]"


def test_tool_calls_and_results_round_trip_as_tool_use_and_tool_result_blocks() -> None:
    body = sent(
        chat(
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [_call("c1", '{"city": "Paris"}'), _call("c2", '{"city": "Rome"}')],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "And tomorrow?"},
            tools=[WEATHER_TOOL],
        )
    )
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "c2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            # consecutive tool results share one user turn, results first, then the user's words
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "24C"}]},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


def test_tool_call_arguments_must_be_a_json_object() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "tool_calls": [_call("c1", "not json")]},
    ]
    assert refused_param(chat(*messages)) == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(tool_choice: Any, expected: dict[str, Any]) -> None:
    assert sent(chat(tools=[WEATHER_TOOL], tool_choice=tool_choice))["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    assert sent(chat(tools=[WEATHER_TOOL], parallel_tool_calls=False))["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert sent(chat(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False))["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }


# --- JSON mode -------------------------------------------------------------------------------------


def test_json_schema_becomes_a_forced_tool_whose_input_is_the_answer() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "weather_report", "description": "A report.", "schema": REPORT_SCHEMA, "strict": True},
    }
    request = translate(chat(response_format=response_format))
    assert request.format_tool == "weather_report"
    assert request.body["tools"] == [
        {"name": "weather_report", "description": "A report.", "input_schema": REPORT_SCHEMA}
    ]
    assert request.body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert "response_format" not in request.body


def test_json_object_becomes_a_forced_tool_taking_any_object() -> None:
    request = translate(chat(response_format={"type": "json_object"}))
    assert request.format_tool == "json_object"
    assert request.body["tools"][0]["input_schema"] == {"type": "object"}
    assert request.body["tool_choice"] == {"type": "tool", "name": "json_object"}
    assert translate(chat(response_format={"type": "text"})).format_tool is None


def test_json_mode_with_client_tools_lets_the_model_call_a_tool_or_answer_in_the_format() -> None:
    request = translate(chat(tools=[WEATHER_TOOL], response_format={"type": "json_object"}))
    assert [t["name"] for t in request.body["tools"]] == ["get_weather", "json_object"]
    assert request.body["tool_choice"] == {"type": "any"}

    with_none = translate(chat(tools=[WEATHER_TOOL], tool_choice="none", response_format={"type": "json_object"}))
    assert with_none.body["tool_choice"] == {"type": "tool", "name": "json_object"}


def test_a_forced_tool_call_makes_json_mode_moot() -> None:
    request = translate(chat(tools=[WEATHER_TOOL], tool_choice="required", response_format={"type": "json_object"}))
    assert request.format_tool is None
    assert [t["name"] for t in request.body["tools"]] == ["get_weather"]


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "array", "items": {}}}},
        {"type": "json_schema", "json_schema": {"schema": REPORT_SCHEMA}},
        {"type": "json_schema", "json_schema": {"name": "get_weather", "schema": REPORT_SCHEMA}},
        {"type": "grammar", "grammar": "root ::= x"},
    ],
    ids=["non-object-root", "no-name", "name-of-a-tool", "unknown-type"],
)
def test_json_modes_that_cannot_be_enforced_are_refused(response_format: dict[str, Any]) -> None:
    assert refused_param(chat(tools=[WEATHER_TOOL], response_format=response_format)) == "response_format"
