"""OpenAI chat bodies -> Gemini ``generateContent`` requests. Every request built here is also checked
against the official google-genai SDK's types (which forbid unknown fields), so a misspelt field
fails here rather than at Google."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from google.genai import types

from common.errors import InvalidRequestError
from workers.providers._gemini_request import (
    FOREIGN_THOUGHT_SIGNATURE,
    generate_content_request,
    tool_call_id,
    with_signature,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}


def valid(request: dict[str, Any]) -> dict[str, Any]:
    """``request``, after checking every piece against the SDK's types."""
    assert set(request) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    for content in request["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in request:
        types.Content.model_validate(request["systemInstruction"])
    for tool in request.get("tools", ()):
        types.Tool.model_validate(tool)
    if "toolConfig" in request:
        types.ToolConfig.model_validate(request["toolConfig"])
    if "generationConfig" in request:
        types.GenerationConfig.model_validate(request["generationConfig"])
    return request


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "public-model")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return valid(generate_content_request(body))


def rejected(**body: Any) -> InvalidRequestError:
    body.setdefault("model", "public-model")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with pytest.raises(InvalidRequestError) as caught:
        generate_content_request(body)
    return caught.value


# --- messages -----------------------------------------------------------------------------------


def test_roles_become_contents_and_system_instruction() -> None:
    request = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [{"type": "text", "text": "And Italy?"}]},
        ]
    )
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert request["contents"] == [
        {"role": "user", "parts": [{"text": "Capital of France?"}]},
        {"role": "model", "parts": [{"text": "Paris."}]},
        {"role": "user", "parts": [{"text": "And Italy?"}]},
    ]
    assert "generationConfig" not in request and "tools" not in request


def test_tool_calls_and_results_round_trip_with_names_and_ids() -> None:
    first, second = tool_call_id("req-1", 0, 0), tool_call_id("req-1", 0, 1)
    request = translate(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": first,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": second,
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": first, "content": '{"temperature": 18}'},
            {"role": "tool", "tool_call_id": second, "content": [{"type": "text", "text": "14:00"}]},
        ],
        tools=[WEATHER_TOOL],
    )
    model_turn, results = request["contents"][1:]
    assert model_turn == {
        "role": "model",
        "parts": [
            # Gemini 3 checks a turn's first call for its thought signature; ours never had one.
            {
                "functionCall": {"id": first, "name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": FOREIGN_THOUGHT_SIGNATURE,
            },
            {"functionCall": {"id": second, "name": "get_time", "args": {"city": "Rome"}}},
        ],
    }
    # Both results answer one turn: one user content, names taken from the calls they answer.
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"id": first, "name": "get_weather", "response": {"output": '{"temperature": 18}'}}},
            {"functionResponse": {"id": second, "name": "get_time", "response": {"output": "14:00"}}},
        ],
    }


def test_a_thought_signature_carried_in_the_tool_call_id_goes_back_to_gemini() -> None:
    signature = "CiQB+/+/ECA="  # standard base64, with the characters an id cannot comfortably carry
    call_id = with_signature("call_abc", signature)
    assert call_id.startswith("call_abc") and not set(call_id) & set("+/=")
    request = translate(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": call_id, "function": {"name": "get_weather", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
    )
    call_part = request["contents"][1]["parts"][0]
    assert call_part == {
        "functionCall": {"id": "call_abc", "name": "get_weather", "args": {}},
        "thoughtSignature": signature,
    }
    assert request["contents"][2]["parts"][0]["functionResponse"]["id"] == "call_abc"


def test_tool_call_ids_are_stable_per_request_and_distinct_per_call() -> None:
    assert tool_call_id("req-1", 0, 0) == tool_call_id("req-1", 0, 0)
    ids = {tool_call_id(r, c, i) for r in ("req-1", "req-2") for c in (0, 1) for i in (0, 1)}
    assert len(ids) == 8 and all(i.startswith("call_") for i in ids)


def test_images_audio_and_files_become_inline_or_file_data() -> None:
    request = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/photos/cat.JPG?size=large"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
                    },
                ],
            }
        ]
    )
    assert request["contents"][0]["parts"] == [
        {"text": "Compare these."},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photos/cat.JPG?size=large"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/render?id=3"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.png"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
            "messages[0].content[0].image_url.url",
        ),
        ({"type": "file", "file": {"file_id": "file-123"}}, "messages[0].content[0].file"),
        ({"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}}, "messages[0].content[0].input_audio"),
        ({"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}, "messages[0].content[0]"),
    ],
)
def test_content_parts_gemini_cannot_take_are_rejected_by_name(part: dict[str, Any], param: str) -> None:
    assert rejected(messages=[{"role": "user", "content": [part]}]).param == param


def test_a_tool_result_must_answer_an_earlier_call() -> None:
    error = rejected(
        messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_x", "content": "y"}]
    )
    assert error.param == "messages[1].tool_call_id"


def test_tool_call_arguments_must_be_a_json_object() -> None:
    bad = {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "[1, 2]"}}]}
    assert (
        rejected(messages=[{"role": "user", "content": "x"}, bad]).param
        == "messages[1].tool_calls[0].function.arguments"
    )


# --- tools and tool_choice ----------------------------------------------------------------------


def test_tools_become_function_declarations_with_gemini_schemas() -> None:
    no_arguments = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    request = translate(tools=[WEATHER_TOOL, no_arguments])
    assert request["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING"},
                            "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]},
                        },
                        "required": ["city"],
                        "propertyOrdering": ["city", "unit"],
                    },
                },
                {"name": "now"},  # Gemini rejects an OBJECT without properties
            ]
        }
    ]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice_becomes_function_calling_config(choice: Any, config: dict[str, Any]) -> None:
    assert translate(tools=[WEATHER_TOOL], tool_choice=choice)["toolConfig"] == {"functionCallingConfig": config}


def test_tool_choice_gemini_cannot_express_is_rejected() -> None:
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    assert rejected(tools=[WEATHER_TOOL], tool_choice=allowed).param == "tool_choice"
    assert rejected(tools=[{"type": "custom", "custom": {"name": "x"}}]).param == "tools[0]"
    assert rejected(tools=[WEATHER_TOOL], parallel_tool_calls=False).param == "parallel_tool_calls"


# --- generation parameters ----------------------------------------------------------------------


def test_sampling_parameters_map_onto_generation_config() -> None:
    request = translate(
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        max_tokens=256,
        stop=["\n\n", "END"],
        n=3,
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        reasoning_effort="medium",
        # Defaults and bookkeeping change nothing and are accepted.
        user="u-1",
        metadata={"team": "a"},
        logprobs=False,
        parallel_tool_calls=True,
        stream=False,
    )
    assert request["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 256,
        "stopSequences": ["\n\n", "END"],
        "candidateCount": 3,
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "thinkingConfig": {"thinkingBudget": 8192},
    }


def test_a_single_stop_string_and_max_completion_tokens() -> None:
    config = translate(stop="END", max_completion_tokens=64)["generationConfig"]
    assert config == {"stopSequences": ["END"], "maxOutputTokens": 64}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"1734": -100}),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("functions", [{"name": "f"}]),
        ("x_vendor_extension", {"a": 1}),
        ("reasoning_effort", "extreme"),
        ("stop", [1, 2]),
        ("response_format", {"type": "yaml"}),
    ],
)
def test_parameters_gemini_cannot_honour_are_rejected_by_name(field: str, value: Any) -> None:
    error = rejected(**{field: value})
    assert error.param == field and error.status == 400


def test_json_object_mode() -> None:
    config = translate(response_format={"type": "json_object"})["generationConfig"]
    assert config == {"responseMimeType": "application/json"}
    assert "generationConfig" not in translate(response_format={"type": "text"})


def test_json_schema_mode_sends_the_schema_in_gemini_form() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Name"},
            "population": {"type": ["integer", "null"]},
            "founded": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "maxItems": 3},
        },
        "required": ["city", "population", "founded", "tags"],
        "additionalProperties": False,
        "$defs": {"Tag": {"anyOf": [{"type": "string", "const": "capital"}, {"type": "null"}]}},
    }
    config = translate(
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": schema}}
    )["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "Name"},
            "population": {"type": "INTEGER", "nullable": True},
            "founded": {"type": "STRING", "description": "Format: date."},
            "tags": {
                "type": "ARRAY",
                "maxItems": 3,
                "items": {"type": "STRING", "enum": ["capital"], "nullable": True},
            },
        },
        "required": ["city", "population", "founded", "tags"],
        "propertyOrdering": ["city", "population", "founded", "tags"],
    }
    types.Schema.model_validate(config["responseSchema"])


def test_the_clients_body_is_left_as_it_came() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"$defs": {"A": {"type": "string"}}, "$ref": "#/$defs/A"}},
        },
    }
    before = copy.deepcopy(body)
    valid(generate_content_request(body))
    assert body == before
