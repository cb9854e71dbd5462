"""What the gateway answers, as pydantic models, for the OpenAPI document only.

Nothing on the request path builds or validates these: answers travel from the workers as bytes
already in this shape (``workers.openai_format``, ``gateway.anthropic.response``, ``gateway.routes``).
Request bodies need no such copy: the document takes them from the models that validate them.
Class docstrings and field descriptions are the document's descriptions, read as Markdown.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.anthropic.schemas import TextBlock, ToolUseBlock

# --- errors ---------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(description="The request parameter at fault, if one is.")
    code: str | None = Field(examples=["model_not_found"])


class ErrorResponse(BaseModel):
    """OpenAI's error shape, for every failure of the OpenAI-format endpoints."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str = Field(examples=["invalid_request_error", "authentication_error", "overloaded_error"])
    message: str


class AnthropicErrorResponse(BaseModel):
    """Anthropic's error shape, for every failure of `POST /v1/messages`."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str


# --- OpenAI: chat and text completions ------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int


_COST = "USD, exactly what the request's usage row stores; null when the deployment's price is unknown."


class AnswerCosts(BaseModel):
    input_cost_usd: float | None = Field(
        default=None, description=f"The prompt's cost (cached tokens at the cached price). {_COST}"
    )
    output_cost_usd: float | None = Field(default=None, description=f"The output's cost. {_COST}")
    total_cost_usd: float | None = Field(default=None, description=f"input + output. {_COST}")


class CompletionUsage(AnswerCosts):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class RouterMetadata(BaseModel):
    """Why this deployment served the request (also sent as `x-modelrouter-*` response headers)."""

    selected_provider: str = Field(examples=["openai"], description="The adapter that called the upstream.")
    selected_model: str = Field(description="The public model that served it: the asked one, a fallback, auto's pick.")
    deployment_id: str
    strategy: str = Field(examples=["priority", "weighted", "least-busy", "latency", "cost"])
    prompt_class: str | None = Field(default=None, examples=["code"], description="Auto routing's class of the prompt.")
    reason: str = Field(description="One sentence.")
    estimated_cost: float | None = Field(description="USD: the answer's cost as billed (usage.total_cost_usd).")
    attempts: int = Field(description="1, plus one per failover.")


_METADATA = "Where the request went and why. In a stream: on its last chunk only."


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="JSON text, as the model wrote it.")


class ChatToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatToolCall] | None = None


class ChatCompletionChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = Field(examples=["stop", "length", "tool_calls", "content_filter"])


class ChatCompletion(BaseModel):
    id: str = Field(examples=["chatcmpl-0c1f4e1a9d3b4b6f8e2a7c5d9b1e3f40"])
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage | None = None
    router_metadata: RouterMetadata | None = Field(default=None, description=_METADATA)


class ChunkFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChunkFunctionCall | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = Field(
        default=None, description="Only on the last chunk, and only with stream_options.include_usage."
    )
    router_metadata: RouterMetadata | None = Field(default=None, description=_METADATA)


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """A legacy text completion, or (streamed) one `data:` event of one."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    router_metadata: RouterMetadata | None = Field(default=None, description=_METADATA)


# --- OpenAI: embeddings and images ----------------------------------------------------------------


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(
        description="Floats, or with encoding_format 'base64' little-endian float32 in base64."
    )


class EmbeddingUsage(AnswerCosts):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    router_metadata: RouterMetadata | None = Field(default=None, description=_METADATA)


class GeneratedImage(BaseModel):
    url: str | None = Field(default=None, description="With response_format 'url' (may be a data: URL).")
    b64_json: str | None = Field(default=None, description="With response_format 'b64_json'.")
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[GeneratedImage]


# --- OpenAI: models -------------------------------------------------------------------------------


class Model(BaseModel):
    id: str = Field(examples=["gpt-4o-mini"])
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


# --- Anthropic: Messages API ----------------------------------------------------------------------


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None


class AnthropicMessagesResponse(BaseModel):
    """The Messages API's answer, a `message` object."""

    id: str = Field(examples=["msg-0c1f4e1a9d3b4b6f8e2a7c5d9b1e3f40"])
    type: Literal["message"]
    role: Literal["assistant"]
    model: str = Field(description="The model the request named.")
    content: list[TextBlock | ToolUseBlock]
    stop_reason: Literal["end_turn", "max_tokens", "tool_use", "refusal"] | None
    stop_sequence: str | None
    usage: AnthropicUsage


# --- health ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    draining: bool = Field(description="The process is shutting down.")
    nats: bool
    router: bool


class CatalogStatus(BaseModel):
    provider: str
    url: str
    models: int
    skipped: int
    last_success: str | None = Field(description="ISO 8601, or null before the first success.")
    last_error: str | None
    last_error_at: str | None
    consecutive_failures: int


class ReadyDetails(BaseModel):
    catalogs: list[CatalogStatus] | None = Field(
        description="The router's remote model catalogues; null when the router could not say."
    )


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: ReadyChecks
    details: ReadyDetails
