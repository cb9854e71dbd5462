"""The rule-based classifier seed 004 describes: code first, then complexity, then short simple
questions, else general.

Signals, strongest first:
- code for sure: a fence, inline code, or text only code has (a traceback, ``KeyError``,
  ``console.log(``, ``#include``, ``=>``, a call ``f()``...);
- code by topic: a language, library or tool's name or a programming noun (``function``, ``regex``,
  ``unit test``): code unless the prompt also asks for analysis, where the subject is the reasoning
  ("plan a migration to Postgres", "show that the function has three roots"), and it is not an ask
  for an artefact ("write a Python function to calculate...");
- complex: analysis, proof, step-by-step or in-depth asks, trade-offs, debugging; a numbered
  multi-part ask; or a long prompt that does not ask for writing or ideas (a rewrite, a summary);
- simple: under 100 characters (seed 004's bound) and not an open-ended ask (write, tell me about,
  suggest, some ideas...).

It runs on the event loop for every auto request (budget: 50 µs), so it avoids what Python's ``re``
does slowly, an alternation of words behind ``\b`` tried at every position of the text (nothing lets
sre skip a position): keywords are looked up in a set of the prompt's words and phrases searched only
when their word is there (``gateway.prompt_class.vocabulary``); the code marks are one alternation of
literals (sre skips every position whose character starts none), and the few other regular
expressions run only after a substring gate says they can match. The cost is bounded
whatever the prompt's size: the fence test reads its first ``FENCE_CHARS`` (a pasted file usually
starts with its fence), everything else its first ``SCAN_CHARS``, where the ask is, and for a long
prompt its last ``TAIL_CHARS`` too (where a long prompt's ask may be instead).
"""

from __future__ import annotations

import re
from typing import Any, Final

from gateway.prompt_class import vocabulary
from gateway.prompt_class.base import CODE, COMPLEX, GENERAL, SIMPLE
from gateway.prompt_class.text import prompt_text

SCAN_CHARS: Final = 600
TAIL_CHARS: Final = 300
FENCE_CHARS: Final = 8192
SIMPLE_MAX_CHARS: Final = 100
# Longer than this, a prompt that asks neither for reasoning nor for writing is complex: it asks for
# several things, or for a careful answer.
LONG_CHARS: Final = 600

# Case-sensitive substrings only code (or a program's output) has.
_CODE_MARKS: Final = (
    "Traceback (most recent call last)",
    "#include",
    "console.log(",
    "System.out.",
    "println",
    "printf(",
    "fmt.",
    "=>",
    "->",
    "::",
    "&&",
    "||",
    "++",
    "()",
    "for (",
    ";\n",
)
# One pattern for all: sre skips the positions whose character starts no mark, six times faster here
# than a substring search per mark.
_CODE_MARK: Final = re.compile("|".join(map(re.escape, _CODE_MARKS)))
# (gate, pattern): the pattern runs only when the gate is in the text.
_CODE_PATTERNS: Final = (
    ("`", re.compile(r"`[^`\n]+`")),  # inline code
    ("Error", re.compile(r"\b[A-Z]\w*Error\b")),  # KeyError, TypeError, ModuleNotFoundError...
    ("Exception", re.compile(r"\b[A-Z]\w*Exception\b")),
    ("def ", re.compile(r"\bdef\s+\w+\s*\(.*\)\s*(?:->.*)?:")),  # a definition, not maths' "function f(x) = ..."
    ("{", re.compile(r"\b(?:fn|func|function)\s+\w+\s*\([^)]*\)[^{\n]*\{")),
    ("[", re.compile(r"\w\[\w+\]")),  # an index: arr[i]
    ("import", re.compile(r"^\s*(?:import\s+\w+|from\s+\w+\s+import\b)", re.MULTILINE)),
    ("SELECT", re.compile(r"\bSELECT\b.+\bFROM\b")),
    ("INSERT", re.compile(r"\bINSERT\s+INTO\b")),
)
# An ask for an artefact: with a programming topic, code whatever else it says.
_MAKE = re.compile(
    r"(?:please |can you )?(?:write|implement|create|code|build|generate|fix|refactor|convert|translate)\b"
)


class HeuristicClassifier:
    """Keyword and shape rules (``python -m bench.classifier`` shows their cost and accuracy)."""

    name = "heuristic"

    def classify(self, body: Any) -> str:
        return classify_text(prompt_text(body))


def classify_text(text: str) -> str:
    if text.find("```", 0, FENCE_CHARS) >= 0:
        return CODE
    head = text[:SCAN_CHARS]
    if _looks_like_code(head):
        return CODE
    lowered = head.lower()
    words = vocabulary.words_of(lowered)
    if vocabulary.CODE.found(words, lowered):
        if _MAKE.match(lowered) or not vocabulary.COMPLEX.found(words, lowered):
            return CODE
        return COMPLEX
    if vocabulary.COMPLEX.found(words, lowered) or _multi_part(head):
        return COMPLEX
    if len(text) > LONG_CHARS:
        # Long, without an ask for reasoning: complex, unless it asks for writing or ideas around a
        # pasted text or a story (the ask opens or closes a long prompt: its tail is read too).
        tail = text[-TAIL_CHARS:].lower()
        tail_words = vocabulary.words_of(tail)
        if vocabulary.COMPLEX.found(tail_words, tail):
            return COMPLEX
        open_ended = vocabulary.OPEN_ENDED.found(words, lowered) or vocabulary.OPEN_ENDED.found(tail_words, tail)
        return GENERAL if open_ended else COMPLEX
    if len(text) < SIMPLE_MAX_CHARS and not vocabulary.OPEN_ENDED.found(words, lowered):
        return SIMPLE
    return GENERAL


def _looks_like_code(head: str) -> bool:
    if _CODE_MARK.search(head):
        return True
    return any(gate in head and pattern.search(head) for gate, pattern in _CODE_PATTERNS)


def _multi_part(head: str) -> bool:
    """A numbered list of asks: "1) ... 2) ..." or "1. ... 2. ..."."""
    return ("1)" in head and "2)" in head) or ("1. " in head and "2. " in head)
