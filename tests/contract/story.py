"""The conversation every provider's fixtures tell, in its own wire format, and what the adapter must
turn it into (OpenAI format) — so one suite checks every provider against the same expectations."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from common.providers.base import Usage

FIXTURES = Path(__file__).parent / "fixtures"

QUESTION = "What is the capital of France?"
# fixture "chat" / "chat.stream"
REPLY_PIECES = ["The", " capital", " of", " France", " is", " Paris", "."]
REPLY = "".join(REPLY_PIECES)
REPLY_USAGE = Usage(prompt_tokens=24, completion_tokens=8, cached_tokens=16)

# fixture "tool_call" / "tool_call.stream": the model asks for the tool...
WEATHER_QUESTION = "What's the weather in Paris?"
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}
TOOL_CALL_USAGE = Usage(prompt_tokens=81, completion_tokens=19)
# ... fixture "tool_result": and answers once the tool's result is sent back.
TOOL_OUTPUT = '{"temperature": 18, "condition": "sunny"}'
TOOL_ANSWER = "It is 18°C and sunny in Paris."
TOOL_ANSWER_USAGE = Usage(prompt_tokens=112, completion_tokens=12)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}


@functools.cache
def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def load_fixture(provider: str, name: str) -> Any:
    """``fixtures/<provider>/<name>.json``, parsed (cached; treat as read-only)."""
    return _read(FIXTURES / provider / f"{name}.json")
