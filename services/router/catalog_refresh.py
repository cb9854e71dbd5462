"""Fetching remote model catalogues: once at start, then in the background every ``refresh_s``.

Each router replica fetches on its own (nothing shared, nothing to coordinate); the list a replica
serves is the last one it fetched successfully. A failed fetch — the catalogue down, an error status,
a document that is not a catalogue, the token missing — changes nothing that is being served: it is
logged, recorded for ``Router.Status`` (and so for the gateway's ``/ready`` details), and retried
sooner than a regular refresh (``RETRY_AFTER_FAILURE_S``), so a catalogue that was down at start
joins within seconds of coming back rather than a whole refresh interval later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from common.config import ModelRouterConfig, ProviderConfig, RemoteCatalogConfig
from modelrouter.router.v1 import router_pb2
from router.remote_catalog import OAUTH_SCHEME, CatalogFormatError, CatalogModels, catalog_models, parse_document
from router.selection import LiveCatalog

log = logging.getLogger(__name__)

# After a failure the next attempt comes after this long (or refresh_s, if shorter).
RETRY_AFTER_FAILURE_S = 30.0


class CatalogFetchError(Exception):
    """A fetch that yielded no list; the message is what Status shows."""


@dataclass
class _Source:
    """One provider's catalogue and what this replica knows about it."""

    provider_name: str
    provider: ProviderConfig
    catalog: RemoteCatalogConfig
    models: int = 0
    skipped: tuple[str, ...] = ()  # why entries of the last good list were left out
    last_success: float = 0.0
    last_error: str = ""
    last_error_at: float = 0.0
    consecutive_failures: int = 0

    def status(self) -> router_pb2.CatalogStatus:
        return router_pb2.CatalogStatus(
            provider=self.provider_name,
            url=_public_url(self.catalog.url),
            models=self.models,
            last_success=self.last_success,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            consecutive_failures=self.consecutive_failures,
            skipped=len(self.skipped),
        )


class CatalogRefresher:
    """Keeps ``table`` fed with every configured catalogue's latest good list."""

    def __init__(
        self,
        config: ModelRouterConfig,
        table: LiveCatalog,
        http: httpx.AsyncClient,
        env: Mapping[str, str],
        *,
        retry_after_failure_s: float = RETRY_AFTER_FAILURE_S,
    ) -> None:
        self._table = table
        self._http = http
        self._env = env
        self._retry_after_failure_s = retry_after_failure_s
        # Catalogue ids are "<provider>/<model>"; the config's own ids must never be shadowed by one.
        self._config_ids = frozenset(d.id for d in config.deployments)
        self._sources = [
            _Source(name, provider, provider.catalog)
            for name, provider in config.providers.items()
            if provider.catalog is not None
        ]
        self._tasks: list[asyncio.Task[None]] = []
        # Rebuilding the table runs in a thread; one rebuild at a time, so two catalogues refreshed
        # together never lose each other's list.
        self._rebuild = asyncio.Lock()

    async def start(self) -> None:
        """Fetch every catalogue once (concurrently; each bounded by its ``timeout_s``), then keep
        refreshing in the background. Never raises for a catalogue that cannot be fetched."""
        results = await asyncio.gather(*(self._refresh(source) for source in self._sources))
        for source, ok in zip(self._sources, results, strict=True):
            self._tasks.append(
                asyncio.create_task(self._keep_fresh(source, ok), name=f"catalog {source.provider_name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def status(self) -> list[router_pb2.CatalogStatus]:
        return [source.status() for source in self._sources]

    async def _keep_fresh(self, source: _Source, last_ok: bool) -> None:
        refresh_s = source.catalog.refresh_s
        while True:
            await asyncio.sleep(refresh_s if last_ok else min(refresh_s, self._retry_after_failure_s))
            last_ok = await self._refresh(source)

    async def _refresh(self, source: _Source) -> bool:
        """One fetch; on success the table serves the new list. Returns whether it succeeded."""
        try:
            models = await self._fetch(source)
        except (CatalogFetchError, CatalogFormatError) as exc:
            self._record_failure(source, str(exc))
            return False
        except httpx.HTTPError as exc:
            self._record_failure(source, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return False
        except Exception as exc:  # a bug must not end the refresh loop, nor hide what went wrong
            log.exception("catalogue of %s: unexpected failure", source.provider_name)
            self._record_failure(source, f"{type(exc).__name__}: {exc}")
            return False
        if models.skipped != source.skipped:  # said once, not at every refresh of the same list
            for reason in models.skipped:
                log.warning("catalogue of %s: skipped %s", source.provider_name, reason)
        if len(models.deployments) != source.models or source.consecutive_failures or not source.last_success:
            log.info("catalogue of %s: serving %d models", source.provider_name, len(models.deployments))
        async with self._rebuild:
            await asyncio.to_thread(self._table.replace, source.provider_name, models.deployments)
        source.models = len(models.deployments)
        source.skipped = models.skipped
        source.last_success = time.time()
        source.last_error, source.last_error_at, source.consecutive_failures = "", 0.0, 0
        return True

    async def _fetch(self, source: _Source) -> CatalogModels:
        catalog = source.catalog
        headers: dict[str, str] = {}
        if catalog.token_env:
            token = self._env.get(catalog.token_env)
            if not token:
                raise CatalogFetchError(f"{catalog.token_env} is not set")
            headers["Authorization"] = f"{OAUTH_SCHEME} {token}"
        try:
            # httpx's timeout bounds each read; this bounds the whole fetch (a start waits on it).
            async with asyncio.timeout(catalog.timeout_s):
                response = await self._http.get(catalog.url, headers=headers, timeout=catalog.timeout_s)
        except TimeoutError:
            raise CatalogFetchError(f"the catalogue did not answer within {catalog.timeout_s:g}s") from None
        if response.is_error or response.is_redirect:
            raise CatalogFetchError(f"the catalogue answered HTTP {response.status_code}")
        # Parsing and building a large catalogue takes tens of milliseconds (about 25 ms for 1,000
        # models): off the event loop, so Route calls are not held up behind it.
        return await asyncio.to_thread(self._models_of, source, response.content)

    def _models_of(self, source: _Source, raw: bytes) -> CatalogModels:
        entries = parse_document(raw)
        return catalog_models(source.provider_name, source.provider, source.catalog, entries, self._config_ids)

    def _record_failure(self, source: _Source, error: str) -> None:
        source.last_error = error
        source.last_error_at = time.time()
        source.consecutive_failures += 1
        kept = f"keeping the last good list ({source.models} models)" if source.last_success else "no list yet"
        log.warning("catalogue of %s: fetch failed: %s; %s", source.provider_name, error, kept)


def _public_url(url: str) -> str:
    """``url`` without credentials or query string (which may carry secrets), for Status."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
