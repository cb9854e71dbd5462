"""The OpenAI JSON shapes the fake provider answers in, one class per operation."""

from __future__ import annotations

import abc
import time
from typing import Any, ClassVar

from common.providers.base import Operation, ProviderCall, Usage


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class Shape(abc.ABC):
    id_prefix: ClassVar[str]
    object_name: ClassVar[str]
    chunk_object_name: ClassVar[str]

    def __init__(self, call: ProviderCall) -> None:
        self.id = f"{self.id_prefix}-{call.request_id}"
        self.created = int(time.time())
        self.model = call.upstream_model

    def _envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def response(self, words: list[str], finish_reason: str, usage: Usage) -> dict[str, Any]:
        body = self._envelope(self.object_name, [self._whole_choice("".join(words), finish_reason)])
        body["usage"] = usage_json(usage)
        return body

    def opening_chunk(self) -> dict[str, Any] | None:
        return None

    def word_chunk(self, word: str) -> dict[str, Any]:
        return self._envelope(self.chunk_object_name, [self._chunk_choice(word, None)])

    def finish_chunk(self, finish_reason: str) -> dict[str, Any]:
        return self._envelope(self.chunk_object_name, [self._chunk_choice(None, finish_reason)])

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        chunk = self._envelope(self.chunk_object_name, [])
        chunk["usage"] = usage_json(usage)
        return chunk

    @abc.abstractmethod
    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]: ...


class ChatShape(Shape):
    id_prefix = "chatcmpl-fake"
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"

    def opening_chunk(self) -> dict[str, Any]:
        # OpenAI's first delta names the role and carries no text yet.
        return self._envelope(
            self.chunk_object_name,
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
        )

    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}

    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        delta = {"content": text} if text is not None else {}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


class CompletionShape(Shape):
    id_prefix = "cmpl-fake"
    object_name = "text_completion"
    chunk_object_name = "text_completion"

    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}


SHAPES: dict[str, type[Shape]] = {Operation.CHAT: ChatShape, Operation.COMPLETIONS: CompletionShape}
