"""Which classifier a gateway uses: the ``PROMPT_CLASSIFIER`` setting names one of ``CLASSIFIERS``.

A learned or embedding classifier joins by adding its factory here; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.prompt_class.base import PromptClassifier
from gateway.prompt_class.heuristic import HeuristicClassifier


class UnknownClassifierError(ValueError):
    """``PROMPT_CLASSIFIER`` names no classifier: the gateway stops at start, saying so."""


CLASSIFIERS: dict[str, Callable[[], PromptClassifier]] = {"heuristic": HeuristicClassifier}


def classifier_named(name: str) -> PromptClassifier:
    try:
        factory = CLASSIFIERS[name]
    except KeyError:
        known = ", ".join(sorted(CLASSIFIERS))
        raise UnknownClassifierError(f"unknown prompt classifier {name!r}; known: {known}") from None
    return factory()
