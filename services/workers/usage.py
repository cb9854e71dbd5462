"""Token usage when the provider did not report it (a cancelled call, a stream that died, a server
that ignores ``stream_options.include_usage``).

These are estimates, not tokenizer counts: about four characters of English text per token, the
rule of thumb OpenAI documents. Providers' own numbers always win when they send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.providers.base import StreamChunk, Usage
from common.token_estimate import CHARS_PER_TOKEN, estimate_tokens

__all__ = ["CHARS_PER_TOKEN", "UsageMeter", "estimate_prompt_tokens", "estimate_tokens"]


def _text_chars(content: Any) -> int:
    """Characters of text in a message ``content`` / ``prompt`` / ``input``: a string, or a list of
    strings or content parts (``{"type": "text", "text": ...}``); images and token ids count zero."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def _tool_call_chars(message: Mapping[str, Any]) -> int:
    total = 0
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += _text_chars(function.get("name")) + _text_chars(function.get("arguments"))
    return total


def prompt_chars(body: Mapping[str, Any]) -> int:
    """Characters of text a request gives the model (chat messages, a completions prompt, embeddings input)."""
    total = _text_chars(body.get("prompt")) + _text_chars(body.get("input"))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += _text_chars(message.get("content")) + _tool_call_chars(message)
    return total


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    return estimate_tokens(prompt_chars(body))


class UsageMeter:
    """Counts one job's usage while it streams: the provider's own numbers once it reports them,
    otherwise an estimate from the request's text and the text generated so far."""

    __slots__ = ("_body", "_completion_chars", "_prompt_tokens", "_reported", "chunks")

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body
        self._reported: Usage | None = None
        self._completion_chars = 0
        self._prompt_tokens: int | None = None
        self.chunks = 0

    @property
    def prompt_estimate(self) -> int:
        """The request's prompt in estimated tokens, walked once however often it is asked for."""
        if self._prompt_tokens is None:
            self._prompt_tokens = estimate_prompt_tokens(self._body)
        return self._prompt_tokens

    def observe(self, chunk: StreamChunk) -> None:
        self.chunks += 1
        self._completion_chars += chunk.text_chars
        if chunk.usage is not None:
            self._reported = chunk.usage

    def counted(self, *, prompt_sent: bool) -> Usage:
        """The usage to report. ``prompt_sent``: the upstream had the prompt (so it is charged) even
        if nothing came back, as when the client cancels a call in flight."""
        if self._reported is not None:
            return self._reported
        if not prompt_sent and self.chunks == 0:
            return Usage()
        # Estimated: the provider never said (cancelled, died mid-stream, or no usage chunk).
        return Usage(prompt_tokens=self.prompt_estimate, completion_tokens=estimate_tokens(self._completion_chars))
