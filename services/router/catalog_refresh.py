"""Fetching remote model catalogues, and discovering providers' models (``router.discovery``): once
at start, then in the background every ``refresh_s``. Both are a ``Listing``: a URL, its headers, and
how its answer becomes deployments; everything below is the same for the two.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from common.config import ModelRouterConfig
from modelrouter.router.v1 import router_pb2
from router.discovery import discovery_listings
from router.remote_catalog import (
    CatalogFetchError,
    CatalogFormatError,
    CatalogModels,
    catalog_listings,
)
from router.selection import ResolvedDeployment

log = logging.getLogger(__name__)

# After a failure the next attempt comes after this long (or refresh_s, if shorter).
RETRY_AFTER_FAILURE_S = 30.0


__all__ = ["CatalogFetchError", "CatalogRefresher", "Listing", "ModelTable"]


class Listing(Protocol):
    """Where a provider's model list comes from: ``remote_catalog.CatalogListing`` or
    ``discovery.DiscoveryListing``."""

    what: str  # "catalogue", "model listing": how messages name it
    provider_name: str
    url: str
    refresh_s: float
    timeout_s: float

    def headers(self, env: Mapping[str, str]) -> dict[str, str]:
        """The fetch's headers (its credential); CatalogFetchError when one is missing."""

    def models_of(self, raw: bytes) -> CatalogModels:
        """The deployments of a fetched answer; CatalogFormatError when it is not a list."""


class ModelTable(Protocol):
    """What the refresher feeds: ``selection.LiveCatalog``, or ``wildcard.WildcardTable`` around one."""

    def replace(self, provider: str, deployments: Iterable[ResolvedDeployment]) -> None: ...


@dataclass
class _Source:
    """One provider's listing and what this replica knows about it."""

    listing: Listing
    models: int = 0
    skipped: tuple[str, ...] = ()  # why entries of the last good list were left out
    last_success: float = 0.0
    last_error: str = ""
    last_error_at: float = 0.0
    consecutive_failures: int = 0

    @property
    def provider_name(self) -> str:
        return self.listing.provider_name

    def status(self) -> router_pb2.CatalogStatus:
        return router_pb2.CatalogStatus(
            provider=self.provider_name,
            url=_public_url(self.listing.url),
            models=self.models,
            last_success=self.last_success,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            consecutive_failures=self.consecutive_failures,
            skipped=len(self.skipped),
        )


class CatalogRefresher:
    """Keeps ``table`` fed with every configured catalogue's and discovering provider's latest good list."""

    def __init__(
        self,
        config: ModelRouterConfig,
        table: ModelTable,
        http: httpx.AsyncClient,
        env: Mapping[str, str],
        *,
        retry_after_failure_s: float = RETRY_AFTER_FAILURE_S,
    ) -> None:
        self._table = table
        self._http = http
        self._env = env
        self._retry_after_failure_s = retry_after_failure_s
        listings: list[Listing] = [*catalog_listings(config), *discovery_listings(config)]
        self._sources = [_Source(listing) for listing in listings]
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
        refresh_s = source.listing.refresh_s
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
            log.exception("%s of %s: unexpected failure", source.listing.what, source.provider_name)
            self._record_failure(source, f"{type(exc).__name__}: {exc}")
            return False
        if models.skipped != source.skipped:  # said once, not at every refresh of the same list
            for reason in models.skipped:
                log.warning("%s of %s: skipped %s", source.listing.what, source.provider_name, reason)
        if len(models.deployments) != source.models or source.consecutive_failures or not source.last_success:
            log.info("%s of %s: serving %d models", source.listing.what, source.provider_name, len(models.deployments))
        async with self._rebuild:
            await asyncio.to_thread(self._table.replace, source.provider_name, models.deployments)
        source.models = len(models.deployments)
        source.skipped = models.skipped
        source.last_success = time.time()
        source.last_error, source.last_error_at, source.consecutive_failures = "", 0.0, 0
        return True

    async def _fetch(self, source: _Source) -> CatalogModels:
        listing = source.listing
        headers = listing.headers(self._env)
        try:
            # httpx's timeout bounds each read; this bounds the whole fetch (a start waits on it).
            async with asyncio.timeout(listing.timeout_s):
                response = await self._http.get(listing.url, headers=headers, timeout=listing.timeout_s)
        except TimeoutError:
            raise CatalogFetchError(f"the {listing.what} did not answer within {listing.timeout_s:g}s") from None
        if response.is_error or response.is_redirect:
            raise CatalogFetchError(f"the {listing.what} answered HTTP {response.status_code}")
        # Parsing and building a large catalogue takes tens of milliseconds (about 25 ms for 1,000
        # models): off the event loop, so Route calls are not held up behind it.
        return await asyncio.to_thread(listing.models_of, response.content)

    def _record_failure(self, source: _Source, error: str) -> None:
        source.last_error = error
        source.last_error_at = time.time()
        source.consecutive_failures += 1
        kept = f"keeping the last good list ({source.models} models)" if source.last_success else "no list yet"
        log.warning("%s of %s: fetch failed: %s; %s", source.listing.what, source.provider_name, error, kept)


def _public_url(url: str) -> str:
    """``url`` without credentials or query string (which may carry secrets), for Status."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
