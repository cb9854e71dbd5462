"""The TGI native adapter: chat rendered into a prompt, parameter mapping and refusals (no tools), JSON
mode as a grammar, stop sequences taken out of the answer, finish reasons, usage from ``prefill`` /
``input_length``, SSE streams and legacy completions. The HTTP cases run against the contract suite's
real local server speaking TGI's wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from common.errors import InvalidRequestError, ModelRouterError, UpstreamError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import UpstreamServer
from tests.contract.upstreams.tgi import WIRE
from workers.providers._tgi_request import StopTrimmer, tgi_request
from workers.providers.tgi import TGIAdapter, TokenReader, answer


def make_call(
    body: dict[str, Any],
    *,
    operation: str = Operation.CHAT,
    stream: bool = False,
    options: dict[str, str] | None = None,
) -> ProviderCall:
    return ProviderCall(
        request_id="req7",
        operation=operation,
        body=body,
        upstream_model="HuggingFaceH4/zephyr-7b-beta",
        api_key="hf_secret",
        timeout_s=5,
        stream=stream,
        options=options or {},
    )


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "public", "messages": [{"role": "user", "content": "Hi?"}], **extra}


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": "public", "prompt": "Once upon a time", **extra}


def chunks_json(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data) for c in chunks]


# --- prompts --------------------------------------------------------------------------------------


def test_chat_renders_with_the_plain_template_by_default() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
    ]
    request = tgi_request(make_call({"model": "m", "messages": messages}), stream=False)

    assert (
        request.body["inputs"]
        == "Be terse.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Capital of France?\n\nAssistant:"
    )
    assert request.stops == ["\nUser:"]
    assert request.body["parameters"]["stop"] == ["\nUser:"]


def test_chat_renders_with_chatml_when_the_deployment_says_so() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    request = tgi_request(
        make_call({"model": "m", "messages": messages}, options={"prompt_template": "chatml"}), stream=False
    )

    assert (
        request.body["inputs"]
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    assert request.stops == []


def test_an_unknown_template_is_a_configuration_error() -> None:
    with pytest.raises(ModelRouterError) as caught:
        tgi_request(make_call(chat(), options={"prompt_template": "jinja"}), stream=False)
    assert caught.value.code == "invalid_provider_option"


def test_images_go_into_the_prompt_as_markdown_images() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "https://example.com/rabbit.png"}},
        {"type": "text", "text": "What is this?"},
    ]
    request = tgi_request(make_call({"model": "m", "messages": [{"role": "user", "content": content}]}), stream=False)
    assert request.body["inputs"] == "User: ![](https://example.com/rabbit.png)\nWhat is this?\n\nAssistant:"


def test_completions_send_the_prompt_as_it_is() -> None:
    request = tgi_request(make_call(completion(max_tokens=5), operation=Operation.COMPLETIONS), stream=False)
    assert request.body["inputs"] == "Once upon a time"
    assert request.stops == [] and "stop" not in request.body["parameters"]


# --- parameters -----------------------------------------------------------------------------------


def test_parameters_map_onto_generate_parameters() -> None:
    body = chat(temperature=0.7, top_p=0.9, max_tokens=50, seed=3, frequency_penalty=0.5, stop=["END"])
    parameters = tgi_request(make_call(body), stream=False).body["parameters"]

    assert parameters == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 50,
        "seed": 3,
        "frequency_penalty": 0.5,
        "stop": ["END", "\nUser:"],
        "details": True,
        "decoder_input_details": True,
    }


def test_temperature_zero_is_greedy_and_top_p_one_is_no_filter() -> None:
    parameters = tgi_request(make_call(chat(temperature=0, top_p=1)), stream=False).body["parameters"]
    assert parameters["do_sample"] is False
    assert "temperature" not in parameters and "top_p" not in parameters
    # OpenAI samples unless told otherwise; TGI would decode greedily.
    assert tgi_request(make_call(chat()), stream=False).body["parameters"]["do_sample"] is True


def test_streams_ask_for_details_but_not_the_prompt_tokens() -> None:
    parameters = tgi_request(make_call(chat(), stream=True), stream=True).body["parameters"]
    assert parameters["details"] is True and "decoder_input_details" not in parameters


def test_the_templates_stop_is_added_only_while_tgi_takes_more() -> None:
    four = ["a", "b", "c", "d"]
    assert tgi_request(make_call(chat(stop=four)), stream=False).stops == four
    assert tgi_request(make_call(chat(stop="x")), stream=False).stops == ["x", "\nUser:"]


def test_json_mode_and_structured_outputs_become_a_grammar() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    json_mode = tgi_request(make_call(chat(response_format={"type": "json_object"})), stream=False)
    structured = tgi_request(
        make_call(chat(response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})),
        stream=False,
    )
    assert json_mode.body["parameters"]["grammar"] == {"type": "json", "value": {"type": "object"}}
    assert structured.body["parameters"]["grammar"] == {"type": "json", "value": schema}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [story.WEATHER_TOOL]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"n": 3}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 1}}, "logit_bias"),
        ({"x_vendor_extension": True}, "x_vendor_extension"),
        ({"stop": [1]}, "stop"),
        ({"response_format": "json"}, "response_format"),
    ],
)
def test_parameters_tgi_cannot_honour_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tgi_request(make_call(chat(**extra)), stream=False)
    assert caught.value.param == param and caught.value.status == 400


def test_requests_that_ask_for_no_tools_are_fine() -> None:
    body = chat(tools=[], tool_choice="none", parallel_tool_calls=True, user="u", presence_penalty=0, n=1)
    assert tgi_request(make_call(body), stream=False).body["inputs"].endswith("Assistant:")


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "tool", "tool_call_id": "c", "content": "x"}, "messages[0].role"),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}, "messages[0].tool_calls"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "messages[0].content[0]"),
    ],
)
def test_messages_tgi_cannot_render_are_refused(message: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tgi_request(make_call({"model": "m", "messages": [message]}), stream=False)
    assert caught.value.param == param


def test_completion_parameters() -> None:
    request = tgi_request(make_call(completion(best_of=2, echo=True), operation=Operation.COMPLETIONS), stream=False)
    assert request.body["parameters"]["best_of"] == 2
    assert request.echo == "Once upon a time"
    for extra, param in (
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"suffix": "x"}, "suffix"),
        ({"logprobs": 1}, "logprobs"),
    ):
        with pytest.raises(InvalidRequestError) as caught:
            tgi_request(make_call(completion(**extra), operation=Operation.COMPLETIONS), stream=False)
        assert caught.value.param == param


# --- stop sequences -------------------------------------------------------------------------------


def test_the_stop_trimmer_holds_back_what_could_become_a_stop_sequence() -> None:
    trimmer = StopTrimmer(["\nUser:", "END"])
    assert trimmer.push("Paris") == "Paris"
    assert trimmer.push(".\n") == "."  # "\n" may start "\nUser:"
    assert trimmer.push("Us") == ""
    assert trimmer.push("ually") == "\nUsually"  # it did not
    assert trimmer.push(" E") == " "
    assert trimmer.push("N") == ""
    assert trimmer.push("D") == ""
    assert trimmer.end(stopped_by_sequence=True) == ""


def test_held_text_comes_out_when_the_answer_ends_for_another_reason() -> None:
    trimmer = StopTrimmer(["END"])
    assert trimmer.push("THE EN") == "THE "
    assert trimmer.end(stopped_by_sequence=False) == "EN"


# --- answers --------------------------------------------------------------------------------------


def generate_answer(text: str, finish: str, prompt_tokens: int = 3, generated: int = 2) -> dict[str, Any]:
    prefill = [{"id": n, "text": "t", "logprob": None} for n in range(prompt_tokens)]
    return {
        "generated_text": text,
        "details": {"finish_reason": finish, "generated_tokens": generated, "prefill": prefill, "tokens": []},
    }


@pytest.mark.parametrize(
    ("finish", "expected"), [("length", "length"), ("eos_token", "stop"), ("stop_sequence", "stop")]
)
def test_finish_reasons_and_usage(finish: str, expected: str) -> None:
    call = make_call(chat())
    response = answer(
        call, tgi_request(call, stream=False), generate_answer("Paris.", finish, prompt_tokens=9, generated=4)
    )

    body = json.loads(response.body)
    assert body["object"] == "chat.completion" and body["model"] == "HuggingFaceH4/zephyr-7b-beta"
    assert body["choices"][0]["finish_reason"] == expected
    assert body["choices"][0]["message"]["content"] == "Paris."
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=4)


def test_the_stop_sequence_tgi_leaves_in_the_text_is_taken_out() -> None:
    call = make_call(chat(stop=["Par"]))
    response = answer(call, tgi_request(call, stream=False), generate_answer("It is Par", "stop_sequence"))
    assert json.loads(response.body)["choices"][0]["message"]["content"] == "It is "
    # ... only when the answer ended on it.
    untouched = answer(call, tgi_request(call, stream=False), generate_answer("It is Par", "length"))
    assert json.loads(untouched.body)["choices"][0]["message"]["content"] == "It is Par"


def test_a_completion_answer_echoes_the_prompt_when_asked() -> None:
    call = make_call(completion(echo=True), operation=Operation.COMPLETIONS)
    body = json.loads(answer(call, tgi_request(call, stream=False), generate_answer(", a fox.", "eos_token")).body)
    assert body["object"] == "text_completion" and body["id"] == "cmpl-req7"
    assert body["choices"][0]["text"] == "Once upon a time, a fox."


# --- streams --------------------------------------------------------------------------------------


def event(text: str, *, special: bool = False, details: dict[str, Any] | None = None) -> dict[str, Any]:
    token = {"id": 1, "text": text, "logprob": -0.1, "special": special}
    return {"index": 1, "token": token, "generated_text": None, "details": details}


def test_tokens_stream_one_chunk_each_and_special_tokens_add_no_text() -> None:
    call = make_call(chat(), stream=True)
    reader = TokenReader(call, tgi_request(call, stream=True))
    done = {"finish_reason": "eos_token", "generated_tokens": 3, "input_length": 12, "seed": None}
    out = [
        reader.feed(event("Hi")),
        reader.feed(event(" there")),
        reader.feed(event("</s>", special=True, details=done)),
    ]

    assert [len(c) for c in out] == [1, 1, 2]
    bodies = chunks_json([c for cs in out for c in cs])
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert bodies[1]["choices"][0]["delta"] == {"content": " there"}
    assert bodies[2]["choices"][0]["finish_reason"] == "stop"
    assert out[2][1].usage_only and out[2][1].usage == Usage(prompt_tokens=12, completion_tokens=3)
    assert reader.done


def test_a_streamed_stop_sequence_never_reaches_the_client() -> None:
    call = make_call(chat(), stream=True)
    reader = TokenReader(call, tgi_request(call, stream=True))
    done = {"finish_reason": "stop_sequence", "generated_tokens": 4, "input_length": 5}
    chunks = (
        reader.feed(event("Paris."))
        + reader.feed(event("\n"))
        + reader.feed(event("User"))
        + reader.feed(event(":", details=done))
    )

    texts = [b["choices"][0]["delta"].get("content") for b in chunks_json(chunks) if b["choices"]]
    assert "".join(t for t in texts if t) == "Paris."
    assert sum(c.text_chars for c in chunks) == len("Paris.")


def test_an_error_event_mid_stream_is_an_upstream_error() -> None:
    call = make_call(chat(), stream=True)
    reader = TokenReader(call, tgi_request(call, stream=True))
    with pytest.raises(UpstreamError) as caught:
        reader.feed({"error": "Request failed during generation: CUDA out of memory", "error_type": "generation"})
    assert "CUDA out of memory" in caught.value.message


def test_a_completion_stream_makes_text_completion_chunks_with_the_echo_first() -> None:
    call = make_call(completion(echo=True), operation=Operation.COMPLETIONS, stream=True)
    reader = TokenReader(call, tgi_request(call, stream=True))
    done = {"finish_reason": "length", "generated_tokens": 1, "input_length": 4}
    bodies = chunks_json(reader.start() + reader.feed(event(",", details=done)))

    assert all(b["object"] == "text_completion" for b in bodies)
    assert [b["choices"][0]["text"] for b in bodies if b["choices"]] == ["Once upon a time", ",", ""]
    assert bodies[2]["choices"][0]["finish_reason"] == "length"


# --- over HTTP, against a real local server -------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[UpstreamServer]:
    with UpstreamServer(WIRE) as upstream:
        yield upstream


async def test_the_story_over_http(server: UpstreamServer) -> None:
    adapter = TGIAdapter(server.base_url)
    question = {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]}
    try:
        response = await adapter.send(make_call(question))
        chunks = [c async for c in adapter.stream(make_call({**question, "stream": True}, stream=True))]
    finally:
        await adapter.aclose()

    # TGI reports no cached tokens; the story's other numbers hold.
    expected = Usage(story.REPLY_USAGE.prompt_tokens, story.REPLY_USAGE.completion_tokens)
    assert json.loads(response.body)["choices"][0]["message"]["content"] == story.REPLY
    assert response.usage == expected
    texts = [b["choices"][0]["delta"].get("content") for b in chunks_json(chunks) if b["choices"]]
    assert [t for t in texts if t] == story.REPLY_PIECES
    assert chunks[-1].usage_only and chunks[-1].usage == expected
    first, second = server.received
    assert (first.path, second.path) == ("/generate", "/generate_stream")
    assert first.api_key == "hf_secret"
    assert first.body["inputs"] == f"User: {story.QUESTION}\n\nAssistant:"
