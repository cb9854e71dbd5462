"""The worker's adapters: one per (provider, base URL), created on first use and kept for the life of
the process, so each one's pooled HTTP connections are reused by every job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from common.errors import ModelRouterError
from common.providers.base import ProviderAdapter

log = logging.getLogger(__name__)


class UnknownProviderError(ModelRouterError):
    """The target names an adapter this worker does not have: a configuration error."""

    default_code = "unknown_provider"


class AdapterPool:
    def __init__(self, registry: Mapping[str, type[ProviderAdapter]]) -> None:
        self._registry = registry
        self._adapters: dict[tuple[str, str], ProviderAdapter] = {}

    def get(self, provider: str, base_url: str) -> ProviderAdapter:
        adapter = self._adapters.get((provider, base_url))
        if adapter is None:
            cls = self._registry.get(provider)
            if cls is None:
                raise UnknownProviderError(
                    f"This worker has no adapter for provider {provider!r} "
                    f"(it has: {', '.join(sorted(self._registry))})."
                )
            adapter = self._adapters[(provider, base_url)] = cls(base_url)
        return adapter

    async def aclose(self) -> None:
        adapters, self._adapters = list(self._adapters.values()), {}
        results = await asyncio.gather(*(a.aclose() for a in adapters), return_exceptions=True)
        for adapter, result in zip(adapters, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("closing the %s adapter for %s failed: %r", adapter.name, adapter.base_url, result)
