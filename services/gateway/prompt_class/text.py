"""The prompt's text, read from an already-parsed request body of any generating endpoint.

What decides the class is the turn being answered: the last user message of a chat (OpenAI's
``messages`` or Anthropic's, whose content is a string or a list of text parts/blocks), or a
completions ``prompt``. Earlier turns and the system prompt describe the conversation, not this
request's need, and reading them would cost time on long conversations.
"""

from __future__ import annotations

from typing import Any


def prompt_text(body: Any) -> str:
    messages = getattr(body, "messages", None)
    if messages:
        for message in reversed(messages):
            if getattr(message, "role", None) == "user":
                return content_text(getattr(message, "content", None))
        return content_text(getattr(messages[-1], "content", None))
    prompt = getattr(body, "prompt", None)
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0]  # a batch of prompts: its first stands for the batch (token ids: no text)
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    parts: list[str] = []
    for part in content:
        if isinstance(part, dict):  # OpenAI's content parts
            if part.get("type") == "text" and isinstance(text := part.get("text"), str):
                parts.append(text)
        elif isinstance(text := getattr(part, "text", None), str):  # Anthropic's text blocks
            parts.append(text)
    return "\n".join(parts)
