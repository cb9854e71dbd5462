"""Numbers a body can carry that the workers cannot hold (NaN, Infinity, 1e400, integers beyond 64
bits), and the integer fields' own bounds: refused at validation with a 400 naming the field by its
JSON path, on every generating endpoint. (The worker's orjson is the judge of what it can hold.)"""

from __future__ import annotations

import math
import random

import orjson
import pytest
from pydantic import BaseModel

from common.errors import InvalidRequestError
from gateway.anthropic.request import to_openai_json
from gateway.anthropic.schemas import parse_request
from gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageGenerationRequest,
    parse_body,
)

HI = '"messages": [{"role": "user", "content": "hi"}]'
CHAT = '{"model": "m", ' + HI + ", %s}"
BIG = "18446744073709551616"  # 2**64: one past uint64
BELOW = "-9223372036854775809"  # one below int64
# Every spelling of a number orjson refuses or cannot keep, as pydantic-core reads them.
UNHOLDABLE = ["1e400", "-1e400", "1E+400", "1.5e0309", "9" * 400, "NaN", "Infinity", "-Infinity", BIG, BELOW, "9" * 25]


def refusal(schema: type[BaseModel], body: str) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as err:
        parse_body(schema, body.encode())
    assert err.value.status == 400
    return err.value


@pytest.mark.parametrize("number", UNHOLDABLE)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (CHAT % '"foo": %s', "foo"),
        (CHAT % '"foo": {"bar": [1, "x", %s]}', "foo.bar.2"),
        (
            '{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "n": %s}]}]}',
            "messages.0.content.0.n",
        ),
        ('{"model": "m", "messages": [{"role": "assistant", "content": "x", "extra": [%s]}]}', "messages.0.extra.0"),
        (
            CHAT % '"tools": [{"type": "function", "function": {"name": "f", "parameters": {"maximum": %s}}}]',
            "tools.0.function.parameters.maximum",
        ),
        (CHAT % '"stream": true, "stream_options": {"include_usage": true, "x": %s}', "stream_options.x"),
    ],
)
def test_a_number_no_worker_can_hold_is_refused_naming_its_path(body: str, param: str, number: str) -> None:
    err = refusal(ChatCompletionRequest, body % number)
    assert err.param == param and err.code == "invalid_value"
    assert err.message.startswith(f"Invalid value for '{param}': ")


@pytest.mark.parametrize(
    ("schema", "body", "param"),
    [
        (CompletionRequest, '{"model": "m", "prompt": "x", "foo": %s}', "foo"),
        (CompletionRequest, '{"model": "m", "prompt": [1, 2, %s]}', "prompt.2"),
        (CompletionRequest, '{"model": "m", "prompt": [[1], [2, %s]]}', "prompt.1.1"),
        (EmbeddingRequest, '{"model": "m", "input": "x", "foo": {"bar": %s}}', "foo.bar"),
        (EmbeddingRequest, '{"model": "m", "input": [[1, 2], [3, %s]]}', "input.1.1"),
        (ImageGenerationRequest, '{"prompt": "x", "foo": [%s]}', "foo.0"),
    ],
)
@pytest.mark.parametrize("number", ["1e400", "NaN", "-Infinity", BIG])
def test_every_endpoint_refuses_them(schema: type[BaseModel], body: str, param: str, number: str) -> None:
    assert refusal(schema, body % number).param == param


@pytest.mark.parametrize(
    ("schema", "body", "param"),
    [
        (ChatCompletionRequest, CHAT % '"max_tokens": %s', "max_tokens"),
        (ChatCompletionRequest, CHAT % '"max_completion_tokens": %s', "max_completion_tokens"),
        (ChatCompletionRequest, CHAT % '"n": %s', "n"),
        (ChatCompletionRequest, CHAT % '"seed": %s', "seed"),
        (ChatCompletionRequest, CHAT % '"top_logprobs": %s', "top_logprobs"),
        (ChatCompletionRequest, CHAT % '"logit_bias": {"50256": %s}', "logit_bias.50256"),
        (ChatCompletionRequest, CHAT % '"temperature": %s', "temperature"),
        (CompletionRequest, '{"model": "m", "prompt": "x", "max_tokens": %s}', "max_tokens"),
        (CompletionRequest, '{"model": "m", "prompt": "x", "logprobs": %s}', "logprobs"),
        (CompletionRequest, '{"model": "m", "prompt": "x", "best_of": %s}', "best_of"),
        (CompletionRequest, '{"model": "m", "prompt": "x", "seed": %s}', "seed"),
        (EmbeddingRequest, '{"model": "m", "input": "x", "dimensions": %s}', "dimensions"),
        (ImageGenerationRequest, '{"prompt": "x", "n": %s}', "n"),
        (ImageGenerationRequest, '{"prompt": "x", "output_compression": %s}', "output_compression"),
        (ImageGenerationRequest, '{"prompt": "x", "partial_images": %s}', "partial_images"),
    ],
)
@pytest.mark.parametrize("number", ["1e400", "NaN", BIG, BELOW])
def test_integer_fields_refuse_them_by_name(schema: type[BaseModel], body: str, param: str, number: str) -> None:
    err = refusal(schema, body % number)
    assert err.param == param and err.message.startswith(f"Invalid value for '{param}': ")


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (CHAT % '"max_tokens": 2147483648', "max_tokens", "Input should be less than or equal to 2147483647"),
        (CHAT % '"seed": 9223372036854775808', "seed", "Input should be less than or equal to 9223372036854775807"),
        (CHAT % '"top_logprobs": 21', "top_logprobs", "Input should be less than or equal to 20"),
        (CHAT % '"logit_bias": {"7": 101}', "logit_bias.7", "Input should be less than or equal to 100"),
    ],
)
def test_integer_fields_have_openais_bounds(body: str, param: str, message: str) -> None:
    assert refusal(ChatCompletionRequest, body).message == f"Invalid value for '{param}': {message}."


@pytest.mark.parametrize(
    "value",
    [
        "18446744073709551615",  # uint64's largest
        "-9223372036854775808",  # int64's smallest
        "1.7976931348623157e308",
        "1e-400",  # rounds to 0, as orjson reads it too
        "-0",
        '"1e400 NaN Infinity 184467440737095516160000"',  # only strings
        '{"1e400": 1, "NaN": [true, null, 12345678]}',
        "123456789012.5e-3",
    ],
)
def test_numbers_orjson_holds_pass(value: str) -> None:
    body = CHAT % f'"foo": {value}, "seed": -9223372036854775808, "max_tokens": 2147483647'
    parsed = parse_body(ChatCompletionRequest, body.encode())
    assert parsed.model_extra == {"foo": orjson.loads(value)}  # as a worker will read it


def _spelled(rng: random.Random) -> str:
    """A JSON number in any spelling: sign, integer part, fraction, exponent (leading zeros and all)."""
    whole = rng.choice(["0", str(rng.randrange(1, 10)) + "".join(rng.choices("0123456789", k=rng.randrange(0, 25)))])
    fraction = "." + "".join(rng.choices("0123456789", k=rng.randrange(1, 8))) if rng.random() < 0.5 else ""
    exponent = ""
    if rng.random() < 0.8:
        digits = str(rng.choice([rng.randrange(0, 400), rng.randrange(280, 330)])).zfill(rng.randrange(1, 5))
        exponent = rng.choice("eE") + rng.choice(["", "+", "-"]) + digits
    return rng.choice(["", "-"]) + whole + fraction + exponent


def _orjson_reads(number: str) -> bool:
    try:
        return math.isfinite(orjson.loads(number))
    except orjson.JSONDecodeError:
        return False


def test_a_number_is_refused_exactly_when_orjson_cannot_hold_it() -> None:
    # The scan in front of the walk must never miss one, whatever its spelling; and what orjson
    # holds must pass. orjson is the judge: it refuses infinities and reads big integers as floats.
    rng = random.Random(14)
    for _ in range(3000):
        number = _spelled(rng)
        if any(mark in number for mark in ".eE"):
            holdable = _orjson_reads(number)  # it refuses what would be infinite
        else:
            holdable = -(2**63) <= int(number) <= 2**64 - 1  # beyond, orjson reads a float instead
        body = (CHAT % '"foo": [%s]') % number
        if holdable:
            parse_body(ChatCompletionRequest, body.encode())
        else:
            assert refusal(ChatCompletionRequest, body).param == "foo.0", number


def test_a_large_body_is_walked_too() -> None:
    # Past the scan's size limit the parsed values are walked directly: nothing slips through.
    filler = ", ".join(f'{{"role": "user", "content": "{"x" * 100}"}}' for _ in range(400))
    body = '{"model": "m", "messages": [' + filler + ', {"role": "user", "content": "x", "n": [1e400]}]}'
    assert len(body) > 32 * 1024
    assert refusal(ChatCompletionRequest, body).param == "messages.400.n.0"


def test_a_union_error_names_the_json_path_not_the_member() -> None:
    assert refusal(EmbeddingRequest, '{"model": "m", "input": 5}').param == "input"
    assert refusal(CompletionRequest, '{"model": "m", "prompt": [1, 2.5]}').param == "prompt.1"


# --- /v1/messages: the request is re-encoded for the worker ---------------------------------------

ASKING = '{"model": "m", %s, "messages": [{"role": "user", "content": "hi"}]}'
MESSAGES = '{"model": "m", "max_tokens": 8, "messages": [%s]}'
TOOL_USE = '{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"x": [%s]}}]}'
TOOLS = '{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tools": [%s]}'


def anthropic_refusal(body: str) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as err:
        to_openai_json(parse_request(body.encode()))
    return err.value


@pytest.mark.parametrize("number", [BIG, "1" * 30])
def test_messages_max_tokens_beyond_64_bits_is_a_400_naming_it(number: str) -> None:
    # It used to reach orjson.dumps: "TypeError: Integer exceeds 64-bit range", a 500.
    err = anthropic_refusal(ASKING % f'"max_tokens": {number}')
    assert err.param == "max_tokens" and err.message == "max_tokens: Input should be less than or equal to 2147483647"


@pytest.mark.parametrize("number", UNHOLDABLE)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (MESSAGES % TOOL_USE, "messages.0.content.0.input.x.0"),
        (TOOLS % '{"name": "f", "input_schema": {"maximum": %s}}', "tools.0.input_schema.maximum"),
    ],
)
def test_messages_numbers_in_re_encoded_values_are_400s_naming_them(body: str, param: str, number: str) -> None:
    # Re-encoded by orjson, such a number used to be a 500 (a large integer) or turn into null.
    err = anthropic_refusal(body % number)
    assert err.param == param and err.message.startswith(f"{param}: ")


def test_messages_top_k_is_bounded_too() -> None:
    assert anthropic_refusal(ASKING % f'"max_tokens": 8, "top_k": {BIG}').param == "top_k"
