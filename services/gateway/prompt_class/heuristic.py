"""The rule-based classifier seed 004 describes: code first, then complexity, then short simple
questions, else general.

Signals, strongest first:
- code for sure: a fence, inline code, or text only code has (a traceback, ``KeyError``,
  ``console.log(``, ``#include``, ``=>``, a call ``f()``...);
- code by topic: a language, library or tool's name or a programming noun (``function``, ``regex``,
  ``unit test``): code unless the prompt also asks for analysis, where the subject is the reasoning
  ("plan a migration to Postgres", "show that the function has three roots"), and it is not an ask
  for an artefact ("write a Python function to calculate...");
- complex: analysis, proof, step-by-step or in-depth asks, trade-offs, debugging; or a long,
  multi-part prompt;
- simple: under 100 characters (seed 004's bound) and not an open-ended ask (write, tell me about,
  suggest, some ideas...).

It runs on the event loop for every auto request (budget: 50 µs), so it avoids what Python's ``re``
does slowly, a large alternation tried at every position of the text: keywords are looked up in a
set of the prompt's words, phrases and code marks are plain substring searches (C loops), and the
few regular expressions run only after a substring gate says they can match. The cost is bounded
whatever the prompt's size: the fence test reads its first ``FENCE_CHARS`` (a pasted file usually
starts with its fence), everything else its first ``SCAN_CHARS``, where the ask is. A longer prompt
is complex anyway.
"""

from __future__ import annotations

import re
import string
from typing import Any, Final

from gateway.prompt_class.base import CODE, COMPLEX, GENERAL, SIMPLE
from gateway.prompt_class.text import prompt_text

SCAN_CHARS: Final = 600  # = LONG_CHARS: past it, a prompt without code is complex anyway
FENCE_CHARS: Final = 8192
SIMPLE_MAX_CHARS: Final = 100
# A prompt this long asks for several things or for a careful answer.
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
# Lower-cased words: programming as the topic. ("c++", "c#", "one-liner" stay words: see _SEPARATORS.)
_CODE_WORDS: Final = frozenset(
    [
        "python",
        "javascript",
        "js",
        "typescript",
        "ts",
        "java",
        "kotlin",
        "swift",
        "rust",
        "golang",
        "haskell",
        "ruby",
        "php",
        "perl",
        "scala",
        "c++",
        "c#",
        "sql",
        "postgres",
        "postgresql",
        "mysql",
        "mysqli",
        "sqlite",
        "bash",
        "powershell",
        "regex",
        "css",
        "html",
        "react",
        "vue",
        "angular",
        "node",
        "nodejs",
        "npm",
        "django",
        "flask",
        "fastapi",
        "pandas",
        "numpy",
        "jest",
        "pytest",
        "junit",
        "docker",
        "dockerfile",
        "kubernetes",
        "k8s",
        "nginx",
        "makefile",
        "git",
        "json",
        "yaml",
        "api",
        "endpoint",
        "awk",
        "sed",
        "grep",
        "function",
        "functions",
        "method",
        "class",
        "struct",
        "interface",
        "variable",
        "array",
        "recursion",
        "compile",
        "compiles",
        "compiled",
        "compiler",
        "syntax",
        "script",
        "code",
        "coding",
        "program",
        "programming",
        "debounce",
        "one-liner",
        "refactor",
        "segfault",
        "div",
        "decorator",
        "async",
        "await",
        "mock",
        "cli",
    ]
)
_CODE_PHRASES: Final = (
    "go code",
    "http handler",
    "shell script",
    "shell command",
    "linked list",
    "binary search tree",
    "hash map",
    "unit test",
    "stack trace",
    "null pointer",
)
# Lower-cased words and phrases: the ask is reasoning, not an artefact.
_COMPLEX_WORDS: Final = frozenset(
    [
        "analyze",
        "analyse",
        "analyzing",
        "analysing",
        "analysis",
        "prove",
        "proof",
        "derive",
        "compare",
        "comparing",
        "contrast",
        "evaluate",
        "assess",
        "critically",
        "implications",
        "weigh",
        "debug",
        "investigate",
        "solve",
        "calculate",
        "theorem",
        "trade-off",
        "trade-offs",
        "tradeoff",
        "tradeoffs",
    ]
)
_COMPLEX_PHRASES: Final = (
    "step by step",
    "step-by-step",
    "walk me through",
    "walk through",
    "reason through",
    "show your reasoning",
    "show that",
    "show each step",
    "explain how",
    "explain why",
    "explain the",
    "explain in",
    "explain each",
    "in depth",
    "in detail",
    "pros and cons",
    "root cause",
    "design a study",
    "design an experiment",
    "design a system",
    "framework",
    "break down",
    "logical fallac",
    "can we conclude",
    "what would happen",
)
# Lower-cased: open-ended asks, however short ("tell me about climate change").
_OPEN_WORDS: Final = frozenset(
    [
        "write",
        "describe",
        "suggest",
        "suggestion",
        "suggestions",
        "recommend",
        "recipe",
        "ideas",
        "idea",
        "tips",
        "some",
        "few",
        "favorite",
        "favourite",
        "story",
        "stories",
        "benefits",
        "itinerary",
        "poem",
        "haiku",
        "limerick",
        "slogan",
        "tweet",
        "summarize",
        "summarise",
        "rewrite",
        "draft",
        "plan",
        "why",
    ]
)
_OPEN_PHRASES: Final = ("tell me", "what are the", "list of", "good way", "best way", "should i", "help me")
# An ask for an artefact: with a programming topic, code whatever else it says.
_MAKE = re.compile(
    r"(?:please |can you )?(?:write|implement|create|code|build|generate|fix|refactor|convert|translate)\b"
)
# A numbered list of asks: "1) ... 2) ..." or "1. ... 2. ...".
_NUMBERED = re.compile(r"(?:^|\s)[1-9][.)]\s")
# Punctuation to spaces, so that str.split gives words ("python?" -> "python"); "+", "#" and "-"
# stay, for "c++", "c#" and "one-liner".
_SEPARATORS: Final = str.maketrans({c: " " for c in string.punctuation if c not in "+#-"})


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
    words = set(lowered.translate(_SEPARATORS).split())
    if not words.isdisjoint(_CODE_WORDS) or any(p in lowered for p in _CODE_PHRASES):
        if _MAKE.match(lowered) or not _asks_for_reasoning(words, lowered):
            return CODE
        return COMPLEX
    if len(text) > LONG_CHARS or _asks_for_reasoning(words, lowered) or _multi_part(head):
        return COMPLEX
    if len(text) < SIMPLE_MAX_CHARS and words.isdisjoint(_OPEN_WORDS) and not any(p in lowered for p in _OPEN_PHRASES):
        return SIMPLE
    return GENERAL


def _asks_for_reasoning(words: set[str], lowered: str) -> bool:
    return not words.isdisjoint(_COMPLEX_WORDS) or any(p in lowered for p in _COMPLEX_PHRASES)


def _looks_like_code(head: str) -> bool:
    if any(mark in head for mark in _CODE_MARKS):
        return True
    return any(gate in head and pattern.search(head) for gate, pattern in _CODE_PATTERNS)


def _multi_part(head: str) -> bool:
    return ("2)" in head or "2." in head) and len(_NUMBERED.findall(head)) >= 2
