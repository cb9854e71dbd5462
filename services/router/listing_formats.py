"""How each adapter's upstream lists the models it serves, for discovery (``router.discovery``).

One entry per adapter whose API has a listing: the path under the provider's base URL (the same base
URL its requests go under) and how to read the model names out of the answer. An adapter without an
entry cannot discover; a provider asking for it gets that said in its Status instead of a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.remote_catalog import CatalogFormatError


@dataclass(frozen=True, slots=True)
class ListingFormat:
    path: str  # appended to the provider's base URL
    # The listed model names of a decoded answer; CatalogFormatError when it is not that shape.
    names: Callable[[Any], list[str]]


def _named_items(document: Any, key: str, fields: tuple[str, ...]) -> list[str]:
    """The first non-empty string among ``fields`` of each item of ``document[key]``."""
    items = document.get(key) if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise CatalogFormatError(f'the model listing is not an object with a "{key}" list')
    names: list[str] = []
    for item in items:
        if isinstance(item, dict):
            name = next((v for f in fields if isinstance(v := item.get(f), str) and v), None)
            if name is not None:
                names.append(name)
    return names


def openai_names(document: Any) -> list[str]:
    """OpenAI's ``GET /v1/models``: ``{"object": "list", "data": [{"id", "object": "model", ...}]}``."""
    return _named_items(document, "data", ("id",))


def ollama_names(document: Any) -> list[str]:
    """Ollama's ``GET /api/tags``: ``{"models": [{"name": "llama2:latest", "model": "llama2:latest", ...}]}``."""
    return _named_items(document, "models", ("name", "model"))


# Adapter name (the workers' registry) -> its upstream's listing.
LISTING_FORMATS: dict[str, ListingFormat] = {
    "openai": ListingFormat("/models", openai_names),  # base URLs end in /v1
    "mistral": ListingFormat("/v1/models", openai_names),  # base URL is the host
    "ollama": ListingFormat("/api/tags", ollama_names),  # base URL is the server's root
}
