"""The provider-adapter interface and the neutral types adapters speak.

An adapter turns one OpenAI-format request body into a call to its provider and the provider's
answer back into OpenAI format: a whole response (``send``) or a sequence of
``chat.completion.chunk`` / ``text_completion`` JSON chunks (``stream``). Provider failures are
raised as ``common.errors.UpstreamError`` subclasses, never as transport exceptions.

One adapter instance serves one (provider, base URL) pair for the life of a worker and owns its
pooled HTTP client.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import orjson

from common.errors import InvalidRequestError


class Operation:
    """Endpoint names, matching events.v1.Operation."""

    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    IMAGES = "images.generations"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ProviderCall:
    """One attempt at one request, as the worker hands it to an adapter."""

    request_id: str
    operation: str
    body: dict[str, Any]  # the client's OpenAI-format body, already parsed; adapters may not mutate it
    upstream_model: str
    api_key: str | None
    timeout_s: float
    stream: bool = False
    include_usage: bool = False
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderResponse:
    """A whole OpenAI-format response body and the usage it reports."""

    body: bytes
    usage: Usage
    # ``body`` as a dict when the adapter has it (it built or parsed it): the worker adds its fields
    # (router_metadata, costs) to this instead of parsing ``body`` again.
    answer: dict[str, Any] | None = None


@dataclass(slots=True)
class StreamChunk:
    """One OpenAI-format chunk. ``usage_only`` marks the final ``choices: []`` usage chunk, which the
    worker forwards only when the client asked for it (``stream_options.include_usage``)."""

    data: bytes
    usage: Usage | None = None
    usage_only: bool = False
    # Characters of generated text (content, tool-call arguments) in this chunk: what the worker
    # estimates completion tokens from when the stream ends without the provider's usage.
    text_chars: int = 0
    # The chunk carries a finish_reason: with the usage chunk, the one that may end the stream, which
    # the worker holds back until the next one so that the stream's last chunk gets router_metadata.
    finish: bool = False
    # ``data`` as a dict when the adapter has it, as ``ProviderResponse.answer``.
    json: dict[str, Any] | None = None

    def with_body(self, body: dict[str, Any]) -> StreamChunk:
        """The same chunk (usage, counts, flags) carrying ``body`` instead."""
        return replace(self, data=orjson.dumps(body), json=body)


class ProviderAdapter(abc.ABC):
    """Subclass per provider, one file each in ``workers/providers/``, registered in REGISTRY."""

    name: ClassVar[str]
    operations: ClassVar[frozenset[str]] = frozenset({Operation.CHAT})

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.options: Mapping[str, str] = options or {}

    @abc.abstractmethod
    async def send(self, call: ProviderCall) -> ProviderResponse:
        """The whole answer to a non-streaming request."""

    @abc.abstractmethod
    def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        """The answer chunk by chunk, ending with a chunk that carries usage."""

    async def aclose(self) -> None:
        """Release pooled connections."""
        return None

    def check_supported(self, call: ProviderCall) -> None:
        if call.operation not in self.operations:
            raise InvalidRequestError(
                f"{call.operation} is not supported by provider {self.name!r}", code="unsupported_operation"
            )
