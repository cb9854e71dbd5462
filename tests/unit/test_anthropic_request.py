"""Anthropic Messages request -> OpenAI chat-completions body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from common.errors import InvalidRequestError
from gateway.anthropic.request import to_openai, to_openai_json
from gateway.anthropic.schemas import parse_request


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]} | fields
    return to_openai(parse_request(orjson.dumps(body)))


def refused(body: dict[str, Any]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as err:
        to_openai(parse_request(orjson.dumps(body)))
    assert err.value.status == 400
    return err.value


def test_minimal_request() -> None:
    assert translate() == {"model": "claude-x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}


def test_system_string_becomes_the_first_message() -> None:
    assert translate(system="Be brief.")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_system_blocks_keep_their_boundaries_and_drop_cache_hints() -> None:
    system = [
        {"type": "text", "text": "Rule one.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Rule two."},
    ]
    assert translate(system=system)["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}],
    }


def test_multi_turn_conversation_keeps_order_and_roles() -> None:
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
    ]
    assert translate(messages=messages)["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert translate(messages=[{"role": "user", "content": content}])["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_tool_use_and_tool_result_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "24C"}]},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]
    assert translate(messages=messages)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "24C"},
        {"role": "user", "content": "Which is warmer?"},
    ]


def test_assistant_turn_with_only_a_tool_call_has_null_content() -> None:
    messages = [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "clock", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
    ]
    out = translate(messages=messages)["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "t1", "content": ""}
    assert len(out) == 3


def test_tools_become_functions() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": schema,
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "custom", "name": "clock", "input_schema": {"type": "object"}, "strict": True},
    ]
    assert translate(tools=tools)["tools"] == [
        {"type": "function", "function": {"name": "weather", "parameters": schema, "description": "Current weather"}},
        {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}, "strict": True}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "clock"}, {"tool_choice": {"type": "function", "function": {"name": "clock"}}}),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required"}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    out = translate(tools=[{"name": "clock", "input_schema": {"type": "object"}}], tool_choice=choice)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in translate(tool_choice={"type": "auto"})


def test_sampling_stop_sequences_user_and_stream() -> None:
    out = translate(
        stop_sequences=["\n\nHuman:", "END"],
        temperature=0.2,
        top_p=0.9,
        metadata={"user_id": "user-42"},
        stream=True,
        service_tier="auto",
    )
    assert out == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\nHuman:", "END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
    }


def test_serialised_body_is_the_translation() -> None:
    parsed = parse_request(
        orjson.dumps({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
    )
    assert orjson.loads(to_openai_json(parsed)) == to_openai(parsed)


def test_disabled_thinking_is_accepted() -> None:
    assert "thinking" not in translate(thinking={"type": "disabled"})


BASE: dict[str, Any] = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": 40}, "top_k"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]}, "tools.0.type"),
        ({"container": "c1"}, "container"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages.0.content.0"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "n"}]}]},
            "messages.0.content.0.tool_use.input",
        ),
        ({"tool_choice": {"type": "tool"}}, "tool_choice"),
    ],
)
def test_invalid_or_unsupported_parameters_are_400_naming_them(extra: dict[str, Any], param: str) -> None:
    err = refused(BASE | extra)
    assert err.param == param
    assert err.message.startswith(f"{param}: ")


def test_missing_max_tokens_reads_like_anthropic() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert refused(body).message == "max_tokens: Field required"


def test_tool_use_in_a_user_turn_is_refused() -> None:
    content = [{"type": "tool_use", "id": "a", "name": "n", "input": {}}]
    assert refused(BASE | {"messages": [{"role": "user", "content": content}]}).param == "messages.0.content.0"


def test_tool_result_in_an_assistant_turn_is_refused() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]},
    ]
    assert refused(BASE | {"messages": messages}).param == "messages.1.content.0"


def test_image_in_a_tool_result_is_refused() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}
    content = [{"type": "tool_result", "tool_use_id": "a", "content": [image]}]
    assert (
        refused(BASE | {"messages": [{"role": "user", "content": content}]}).param == "messages.0.content.0.content.0"
    )


@pytest.mark.parametrize(("raw", "message"), [(b'{"model": ', "not valid JSON"), (b"[1]", "must be a JSON object")])
def test_body_that_is_not_a_json_object(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_request(raw)
    assert message in err.value.message
