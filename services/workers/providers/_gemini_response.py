"""Gemini's ``GenerateContentResponse`` as OpenAI chat completions: whole, or event by event.

Shapes from the Gemini API reference (ai.google.dev/api/generate-content#generatecontentresponse:
``candidates[]`` with ``content.parts``, ``finishReason`` and ``index`` — left out when 0, as proto3
JSON does —, ``promptFeedback.blockReason``, ``usageMetadata``, ``responseId``) and the google-genai
SDK's ``FinishReason`` and ``GenerateContentResponseUsageMetadata``. A streamed answer
(``streamGenerateContent?alt=sse``) is the same object per event, each holding the new part of every
candidate; a function call always arrives whole, in one event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.errors import UpstreamError
from common.providers.base import ProviderCall, StreamChunk, Usage
from workers.openai_format import ChatChunks, Choice, CompletionChunks, ToolCall
from workers.providers._gemini_request import tool_call_id, with_signature

# Generation stopped by a filter (safety, recitation, blocklists, ...): OpenAI's content_filter.
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    """OpenAI's finish_reason for Gemini's. Anything else that ends a candidate (OTHER,
    MALFORMED_FUNCTION_CALL, ...) is a plain stop: the client gets what was generated."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def usage_of(metadata: Any) -> Usage | None:
    """Gemini bills thinking as output and tool-use prompts as input, so they count there too."""
    if not isinstance(metadata, dict):
        return None
    return Usage(
        prompt_tokens=int(metadata.get("promptTokenCount") or 0) + int(metadata.get("toolUsePromptTokenCount") or 0),
        completion_tokens=int(metadata.get("candidatesTokenCount") or 0) + int(metadata.get("thoughtsTokenCount") or 0),
        cached_tokens=int(metadata.get("cachedContentTokenCount") or 0),
    )


def response_id_of(answer: dict[str, Any], call: ProviderCall) -> str:
    return f"chatcmpl-{answer.get('responseId') or call.request_id}"


def prompt_blocked(answer: dict[str, Any]) -> bool:
    feedback = answer.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def candidates_of(answer: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(choice index, candidate) for each candidate of an answer or event."""
    candidates = answer.get("candidates")
    for candidate in candidates if isinstance(candidates, list) else ():
        if isinstance(candidate, dict):
            yield int(candidate.get("index") or 0), candidate


def read_parts(
    candidate: dict[str, Any], call: ProviderCall, choice: int, calls_before: int
) -> tuple[list[str], list[ToolCall]]:
    """The texts and function calls of a candidate's parts. ``thought`` parts (thinking summaries) are
    not the answer; a call without Gemini's own id gets ours, numbered after ``calls_before``."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        function = part.get("functionCall")
        if isinstance(function, dict):
            call_id = function.get("id") or tool_call_id(call.request_id, choice, calls_before + len(calls))
            arguments = orjson.dumps(function.get("args") or {}).decode()
            calls.append(
                ToolCall(with_signature(call_id, part.get("thoughtSignature")), str(function.get("name")), arguments)
            )
    return texts, calls


def choices_of(answer: dict[str, Any], call: ProviderCall, n: int) -> list[Choice]:
    """The choices of a whole answer, in candidate order."""
    choices: list[tuple[int, Choice]] = []
    for index, candidate in candidates_of(answer):
        texts, calls = read_parts(candidate, call, index, 0)
        content = "".join(texts) if texts else (None if calls else "")
        choices.append((index, Choice(content, finish_reason(candidate.get("finishReason"), bool(calls)), calls)))
    if choices:
        return [choice for _, choice in sorted(choices, key=lambda c: c[0])]
    if prompt_blocked(answer):  # the prompt itself was refused: no candidate at all
        return [Choice(None, "content_filter") for _ in range(n)]
    raise UpstreamError("The upstream provider (gemini) answered without any candidate.")


@dataclass
class StreamReader:
    """Turns the events of one ``streamGenerateContent`` answer into OpenAI chunks: one chunk per
    candidate update (the role rides on a choice's first delta), then the usage chunk at the end."""

    call: ProviderCall
    n: int
    as_completion: bool = False
    _chunks: ChatChunks | CompletionChunks | None = None
    _usage: Usage | None = None
    _calls: dict[int, int] = field(default_factory=dict)  # per choice seen: its tool calls so far
    _finished: set[int] = field(default_factory=set)
    _blocked: bool = False

    def _builder(self, event: dict[str, Any]) -> ChatChunks | CompletionChunks:
        if self._chunks is None:
            response_id = response_id_of(event, self.call)
            if self.as_completion:
                self._chunks = CompletionChunks(self.call, response_id.replace("chatcmpl", "cmpl", 1))
            else:
                self._chunks = ChatChunks(self.call, response_id, role_in_first_delta=True)
        return self._chunks

    def event(self, event: dict[str, Any]) -> list[StreamChunk]:
        chunks = self._builder(event)
        self._usage = usage_of(event.get("usageMetadata")) or self._usage
        out: list[StreamChunk] = []
        for choice, candidate in candidates_of(event):
            self._calls.setdefault(choice, 0)
            texts, calls = read_parts(candidate, self.call, choice, self._calls[choice])
            text = "".join(texts)
            if text:
                out += chunks.text(text, choice=choice)
            for call in calls:
                if isinstance(chunks, ChatChunks):
                    index = self._calls[choice]
                    out += chunks.tool_call_start(index, call.id, call.name, choice=choice)
                    out += chunks.tool_call_arguments(index, call.arguments, choice=choice)
                self._calls[choice] += 1
            if candidate.get("finishReason"):
                self._finished.add(choice)
                out += chunks.finish(finish_reason(candidate["finishReason"], self._calls[choice] > 0), choice=choice)
        if not self._calls and prompt_blocked(event) and not self._blocked:
            self._blocked = True
            for choice in range(self.n):
                out += chunks.finish("content_filter", choice=choice)
        return out

    def end(self) -> list[StreamChunk]:
        """The closing usage chunk; an error if the stream stopped before every candidate finished."""
        complete = self._blocked or (bool(self._calls) and self._finished >= set(self._calls))
        if self._chunks is None or not complete:
            raise UpstreamError("The upstream provider (gemini) ended the stream before it finished.")
        return [self._chunks.usage(self._usage)] if self._usage is not None else []
