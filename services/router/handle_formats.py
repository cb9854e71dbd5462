"""Which adapter speaks a catalogue handle's wire format, told from the handle's path alone.

Seed 002's catalogues name a ``model_family`` per entry but no adapter; its proxy forwarded the body
unchanged, so what an endpoint speaks is what its path says: ``/openai/v1/chat/completions`` and
``/fireworks/chat/completions`` are OpenAI's API, ``/anthropic/v1/messages`` Anthropic's Messages API,
``/v1beta/models/gemini-2.5-flash:generateContent`` Gemini's. A catalogue with ``infer_adapters``
uses this for entries its ``families`` do not map. The longest matching tail wins
(``/chat/completions`` before ``/completions``); a handle matching none is skipped, never guessed.
"""

from __future__ import annotations

# Path tail -> adapter name in the workers' registry. Only tails that name one API unambiguously.
HANDLE_FORMATS: dict[str, str] = {
    "/chat/completions": "openai",
    "/completions": "openai",
    "/embeddings": "openai",
    "/images/generations": "openai",
    "/v1/messages": "anthropic",
    ":generateContent": "gemini",
    ":streamGenerateContent": "gemini",
    ":embedContent": "gemini",
    "/api/chat": "ollama",
    "/api/generate": "ollama",
    "/api/embed": "ollama",
    "/v2/chat": "cohere",
    "/v2/embed": "cohere",
}
_LONGEST_FIRST = sorted(HANDLE_FORMATS.items(), key=lambda item: len(item[0]), reverse=True)


def adapter_of_handle(handle: str) -> str | None:
    """The adapter whose API ``handle`` (a path, query and trailing slash ignored) is, or None."""
    path = handle.split("?", 1)[0].rstrip("/")
    return next((adapter for tail, adapter in _LONGEST_FIRST if path.endswith(tail)), None)
