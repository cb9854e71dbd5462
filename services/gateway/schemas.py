"""Validation of request bodies. The body is parsed once (pydantic-core, from the raw bytes); the raw
bytes then travel to the worker untouched, so fields we do not model are passed through.

Integer fields carry the bounds of OpenAI's API reference: a number it would refuse is refused here
with a 400 naming the field, not passed on for a provider to refuse (or for a worker to fail on: see
``gateway.json_numbers`` for the numbers no field may carry).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import InvalidRequestError
from gateway.json_numbers import unholdable_number

_PASSTHROUGH = ConfigDict(extra="allow")

# Token counts are 32-bit integers at OpenAI: a larger max_tokens is refused there as out of range.
TOKENS_MAX = 2**31 - 1
# logit_bias maps token ids to a bias "from -100 to 100".
LogitBias = dict[str, Annotated[int, Field(ge=-100, le=100)]]


class StreamOptions(BaseModel):
    model_config = _PASSTHROUGH
    include_usage: bool = False


class _Streamable(BaseModel):
    model_config = _PASSTHROUGH
    # Absent: "" (a default is not validated), which the gateway replaces with its default model or
    # refuses (gateway.auto_routing); an explicit "" is refused here.
    model: str = Field(
        default="",
        min_length=1,
        description="The model to use; `auto` lets the gateway pick one for the prompt. Required unless "
        "the gateway has a default model (`DEFAULT_MODEL`).",
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _Streamable:
        if self.stream_options is not None and not self.stream:
            raise ValueError("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatMessage(BaseModel):
    model_config = _PASSTHROUGH
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class _Sampling(BaseModel):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=TOKENS_MAX)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # an int64 in OpenAI's reference
    logit_bias: LogitBias | None = None


class ChatCompletionRequest(_Streamable, _Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=TOKENS_MAX)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_Streamable, _Sampling):
    """Legacy text completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = Field(default=None, ge=1, le=20)
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None


class EmbeddingRequest(BaseModel):
    model_config = _PASSTHROUGH
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=TOKENS_MAX)

    @model_validator(mode="after")
    def _input_not_empty(self) -> EmbeddingRequest:
        if self.input == "" or self.input == []:
            raise ValueError("'input' cannot be an empty string or array.")
        if isinstance(self.input, list) and len(self.input) > 2048:
            raise ValueError("'input' must have at most 2048 items.")
        return self


class ImageGenerationRequest(BaseModel):
    model_config = _PASSTHROUGH
    prompt: str = Field(min_length=1)
    model: str = Field(default="dall-e-2", min_length=1)
    n: int | None = Field(default=None, ge=1, le=10)
    response_format: Literal["url", "b64_json"] | None = None
    size: str | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)  # a percentage
    partial_images: int | None = Field(default=None, ge=0, le=3)
    stream: Literal[False] | None = Field(default=None, description="partial-image streaming is not supported")


M = TypeVar("M", bound=BaseModel)

_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate ``body`` as ``model`` or raise an InvalidRequestError naming the parameter."""
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if (number := unholdable_number(parsed, body)) is not None:
        raise InvalidRequestError(
            f"Invalid value for '{number.param}': {number.reason}.", param=number.param, code="invalid_value"
        )
    return parsed


# How pydantic names a union's members in an error's location (``prompt.list[int].2``).
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|\w+\[.*\]")


def _first_error(exc: ValidationError) -> tuple[Any, tuple[int | str, ...]]:
    """The first error, and its location as a JSON path. A union (``prompt``, ``input``) reports an
    error per member; the one the client meant is the member whose shape the value had (its error is
    about the content, not the type), and the member's name is no part of the path."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    at = next((n for n, part in enumerate(err["loc"]) if _is_member(part)), None)
    if at is None:
        return err, tuple(err["loc"])
    siblings = [e for e in errors if e["loc"][:at] == err["loc"][:at]]
    err = max(siblings, key=lambda e: (not e["type"].endswith("_type"), len(e["loc"])))
    return err, tuple(part for part in err["loc"] if not _is_member(part))


def _is_member(part: int | str) -> bool:
    return isinstance(part, str) and _UNION_MEMBER.fullmatch(part) is not None


def _invalid(exc: ValidationError) -> InvalidRequestError:
    err, loc = _first_error(exc)
    kind = err["type"]
    if kind == "json_invalid":
        return InvalidRequestError(_NOT_JSON, code="invalid_json")
    if kind == "model_type" or not loc:
        msg = str(err.get("ctx", {}).get("error", "")) or "The request body must be a JSON object."
        return InvalidRequestError(msg.removeprefix("Value error, "))
    param = ".".join(str(p) for p in loc)
    if kind == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    return InvalidRequestError(f"Invalid value for '{param}': {err['msg']}.", param=param, code="invalid_value")
