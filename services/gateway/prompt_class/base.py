"""The classifier's interface and its classes."""

from __future__ import annotations

from typing import Any, Final, Protocol

CODE: Final = "code"  # fenced or inline code, programming languages and tools
COMPLEX: Final = "complex"  # analysis, explanation, debugging, proofs, multi-step or multi-part asks
SIMPLE: Final = "simple"  # short questions with a short answer, greetings
GENERAL: Final = "general"  # the rest: open-ended writing, advice, information
CLASSES: Final = (CODE, COMPLEX, SIMPLE, GENERAL)


class PromptClassifier(Protocol):
    """Sorts a request into one of ``CLASSES``; the config maps each class to candidate models.

    ``body`` is the request as the gateway already parsed it (a chat completions, completions or
    Messages request): a classifier reads its attributes and never parses JSON again. It runs on the
    event loop for every auto request, so it must not block: a model that needs more than a few tens
    of microseconds belongs in a thread or a service of its own, not here.
    """

    name: str

    def classify(self, body: Any) -> str: ...
