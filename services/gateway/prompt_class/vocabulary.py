"""What the heuristic classifier looks for, as data: the words and phrases of each signal.

Words are whole tokens of the lower-cased prompt (punctuation split off; ``+``, ``#`` and ``-`` kept,
for ``c++``, ``c#`` and ``one-liner``), looked up in a set. Phrases are substrings; each is indexed by
one of its words, so a prompt is searched only for the phrases whose word it contains (a set
intersection in C), not for every phrase.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Final

# Punctuation to spaces, so that str.split gives the words ("python?" -> "python").
SEPARATORS: Final = str.maketrans({c: " " for c in string.punctuation if c not in "+#-"})


def words_of(lowered: str) -> set[str]:
    return set(lowered.translate(SEPARATORS).split())


class Vocabulary:
    """A signal's words and phrases; ``found`` says whether a prompt has any."""

    def __init__(self, words: Iterable[str], phrases: Iterable[str] = ()) -> None:
        self.words = frozenset(words)
        by_word: dict[str, list[str]] = {}
        for phrase in phrases:
            tokens = phrase.translate(SEPARATORS).split()
            # Not the last token: a phrase may end inside a word ("root cause" in "root causes").
            by_word.setdefault(max(tokens[:-1] or tokens, key=len), []).append(phrase)
        self._phrases = {word: tuple(found) for word, found in by_word.items()}
        self._keys = frozenset(self._phrases)

    def found(self, words: set[str], lowered: str) -> bool:
        if not words.isdisjoint(self.words):
            return True
        return any(p in lowered for key in self._keys.intersection(words) for p in self._phrases[key])


# Programming as the topic. ("program" is not one: "a bike-share program".)
CODE: Final = Vocabulary(
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
    ],
    (
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
    ),
)
# The ask is reasoning, not an artefact.
COMPLEX: Final = Vocabulary(
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
    ],
    (
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
    ),
)
# Open-ended asks, however short ("tell me about climate change").
OPEN_ENDED: Final = Vocabulary(
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
    ],
    ("tell me", "what are the", "list of", "good way", "best way", "should i", "help me"),
)
