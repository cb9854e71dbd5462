"""The Messages API request, validated once from the raw bytes (pydantic-core).

Unknown top-level parameters are refused (as Anthropic's API does), so a client never believes a
setting took effect when it did not. Inside content blocks and tools, unknown fields are dropped:
they are hints such as ``cache_control`` and ``citations`` with no chat-completions equivalent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from common.errors import InvalidRequestError
from gateway.json_numbers import unholdable_number
from gateway.schemas import TOKENS_MAX

_HINTS_DROPPED = ConfigDict(extra="ignore")


def _text_shorthand(value: Any) -> Any:
    """A string is Anthropic's shorthand for one text block. Expanding it here keeps every content
    field a plain list, so a validation error names the block at fault, not a union branch."""
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


B = TypeVar("B")
Blocks = Annotated[list[B], BeforeValidator(_text_shorthand)]


class TextBlock(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["text"]
    text: str


class Base64Source(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str = Field(min_length=1)


class URLSource(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["url"]
    url: str = Field(min_length=1)


class ImageBlock(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


ToolResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Blocks[ToolResultPart] = Field(default_factory=list)
    is_error: bool = False


class ThinkingBlock(BaseModel):
    """An earlier turn's reasoning. Anthropic's API itself leaves previous turns' thinking out of the
    model's context, so the translation drops it too."""

    model_config = _HINTS_DROPPED
    type: Literal["thinking", "redacted_thinking"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")
]


class Message(BaseModel):
    model_config = _HINTS_DROPPED
    role: Literal["user", "assistant"]
    content: Blocks[ContentBlock]


class Tool(BaseModel):
    model_config = _HINTS_DROPPED
    # Server tools (web search, bash, …) carry their own ``type``; only client tools translate.
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool | None = None


class ToolChoice(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _tool_needs_name(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs the tool's 'name'")
        return self


class Metadata(BaseModel):
    model_config = _HINTS_DROPPED
    user_id: str | None = None


class Thinking(BaseModel):
    model_config = _HINTS_DROPPED
    type: Literal["enabled", "disabled", "adaptive"]


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=TOKENS_MAX)
    messages: list[Message] = Field(min_length=1)
    system: Blocks[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=TOKENS_MAX)
    metadata: Metadata | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    # Accepted and ignored: scheduling and caching hints that change no answer.
    service_tier: str | None = None
    cache_control: dict[str, Any] | None = None


def parse_request(body: bytes) -> MessagesRequest:
    """Validate ``body`` or raise an InvalidRequestError whose message names the parameter, in
    Anthropic's style (``messages.0.role: Input should be 'user' or 'assistant'``)."""
    try:
        parsed = MessagesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    # Re-encoded for the worker (``request.to_openai_json``), such a number would fail orjson (an
    # integer beyond 64 bits: a 500) or turn into null (NaN, infinity).
    if (number := unholdable_number(parsed, body)) is not None:
        raise InvalidRequestError(f"{number.param}: {number.reason}", param=number.param)
    return parsed


def _invalid(exc: ValidationError) -> InvalidRequestError:
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    if kind == "json_invalid":
        return InvalidRequestError("The request body is not valid JSON.", code="invalid_json")
    if kind == "model_type" and len(err["loc"]) == 0:
        return InvalidRequestError("The request body must be a JSON object.")
    param = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return InvalidRequestError(f"{param}: {message}" if param else message, param=param or None)
