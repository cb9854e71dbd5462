"""Which classifier a gateway uses: the ``PROMPT_CLASSIFIER`` setting names one of ``CLASSIFIERS``.

A learned or embedding classifier joins by adding its factory here; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.prompt_class.base import PromptClassifier
from gateway.prompt_class.heuristic import HeuristicClassifier

CLASSIFIERS: dict[str, Callable[[], PromptClassifier]] = {"heuristic": HeuristicClassifier}


def classifier_named(name: str) -> PromptClassifier:
    try:
        factory = CLASSIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown prompt classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}") from None
    return factory()
