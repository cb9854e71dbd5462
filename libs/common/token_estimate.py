"""Tokens estimated from characters, where no provider counted them: about four characters of
English text per token, the rule of thumb OpenAI documents. Shared by the workers (a call the
provider did not report usage for) and the gateway (a stream whose worker vanished)."""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN) if chars > 0 else 0  # ceil: any text is at least one token
