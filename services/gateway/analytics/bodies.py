"""``store_bodies``: a request's prompt text and its answer's text, sent with its usage event.

Only a request whose key stores bodies (the key's ``store_bodies``, else the config's) gets a
``BodyCapture``; every other request carries None and pays nothing. While the answer is relayed the
capture only keeps references (the validated request, the answer's bytes or the streamed chunks, up
to the cap); the texts are pulled out and cut in ``fill``, which the dispatcher calls when it
accounts the request, after the answer went out.

Each text is cut to ``cap`` bytes of UTF-8 (at a character boundary) and the cut is marked twice: a
``… [truncated: N bytes]`` suffix in the text (``… [truncated]`` for a
stream whose end was not kept) and the event's ``*_truncated`` flag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)
# The texts ride in a UsageBatch (gateway.usage caps a batch at 256 KiB, NATS a message at 1 MiB).
MAX_CAP_BYTES = 256 * 1024


def cut(text: str, cap: int) -> tuple[str, bool]:
    """``text`` within ``cap`` bytes of UTF-8, with the cut marked; and whether it was cut."""
    encoded = text.encode()
    if len(encoded) <= cap:
        return text, False
    kept = encoded[:cap].decode(errors="ignore")  # never half a character
    return f"{kept}… [truncated: {len(encoded)} bytes]", True


def _texts(value: Any) -> Iterable[str]:
    """The text in a prompt, an input or a message's content: strings, and the ``text`` of content
    parts (OpenAI's dicts, or Anthropic's validated text blocks); token arrays and images are not text."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                yield item["text"]
            elif isinstance(getattr(item, "text", None), str):
                yield item.text


def prompt_text(parsed: Any) -> str:
    """The prompt of a validated chat, completion, embedding, image or Anthropic messages request: every
    message's text in order (system prompts included: they are part of what was sent), or the prompt or
    input."""
    messages = getattr(parsed, "messages", None)
    if messages is not None:
        system = list(_texts(getattr(parsed, "system", None)))  # Anthropic's, outside the messages
        return "\n\n".join([*system, *(text for m in messages for text in _texts(getattr(m, "content", None)))])
    for name in ("prompt", "input"):
        value = getattr(parsed, name, None)
        if value is not None:
            return "\n\n".join(_texts(value))
    return ""


def _choice_text(choice: Any, *, delta: bool) -> str:
    if not isinstance(choice, dict):
        return ""
    if isinstance(choice.get("text"), str):  # completions
        return str(choice["text"])
    part = choice.get("delta" if delta else "message")
    content = part.get("content") if isinstance(part, dict) else None
    return "".join(_texts(content))


def answer_text(data: bytes, *, delta: bool) -> str:
    """The generated text of an OpenAI-format answer (or, with ``delta``, of one stream chunk):
    the choices' message content or text; "" for embeddings, images and anything unreadable."""
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        return ""
    return "\n".join(text for c in choices if (text := _choice_text(c, delta=delta)))


@dataclass(slots=True)
class BodyCapture:
    parsed: Any  # the validated request (its schema's model)
    cap: int
    answer: bytes = b""  # a non-streamed answer's body
    chunks: list[bytes] = field(default_factory=list)
    chunk_chars: int = 0
    chunks_cut: bool = False  # chunks past the cap were not kept

    def chunk(self, chunk: events_pb2.Chunk) -> None:
        """Keep a streamed chunk, until the text kept is past the cap (a character is at least a byte)."""
        if self.chunk_chars > self.cap:
            self.chunks_cut = True
            return
        self.chunks.append(chunk.data)
        self.chunk_chars += chunk.text_chars

    def fill(self, event: events_pb2.UsageEvent) -> None:
        """Put the cut texts in ``event``. Off the request path: the answer has gone out."""
        try:
            if self.chunks:
                response = "".join(answer_text(c, delta=True) for c in self.chunks)
            else:
                response = answer_text(self.answer, delta=False) if self.answer else ""
            event.prompt_text, event.prompt_truncated = cut(prompt_text(self.parsed), self.cap)
            if self.chunks_cut:  # the rest of the stream was not kept: its full size is unknown
                event.response_text = f"{response.encode()[: self.cap].decode(errors='ignore')}… [truncated]"
                event.response_truncated = True
            else:
                event.response_text, event.response_truncated = cut(response, self.cap)
            event.bodies_stored = True
        except Exception:  # the usage row matters more than its texts
            log.exception("request %s: its texts could not be kept", event.request_id)
