"""Discovery: a provider with ``discover`` serves whatever its upstream lists, as a catalogue does.

The router asks the upstream for its models (the adapter's listing, ``router.listing_formats``:
OpenAI's ``GET /v1/models``, Ollama's ``GET /api/tags``) with the provider's own key, at start and
every ``discover.refresh_s``, through the same refresher as remote catalogues
(``router.catalog_refresh``): a failed listing keeps the last good list and shows in ``Status``.

Each listed model becomes a deployment of the provider:

- public name and upstream model = the listed name; a name with Ollama's default tag
  (``llama2:latest``) is also served as the bare name (``llama2``), which is how users ask for it
  (Ollama itself takes either), with the tagged name still sent upstream;
- deployment id = ``<provider>/<public name>``, stable across listings and replicas, so health and
  rate-limit state in Redis follows the model;
- a public name the config already gives a deployment of this provider is left to that deployment,
  which carries the limits the operator wrote; the listing only adds what the config does not say;
- the price of the config's deployment of this provider with the same upstream model (the shipped
  ``cerebras/llama3.1-8b`` prices the listed ``llama3.1-8b``); otherwise the price list's
  (``common.config.list_price``), else an unknown price: null cost, flagged, never billed as free.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import orjson

from common.config import (
    AUTH_SCHEME_OPTION,
    DeploymentConfig,
    DiscoveryConfig,
    ModelRouterConfig,
    Price,
    ProviderConfig,
    list_price,
)
from router.listing_formats import LISTING_FORMATS, ListingFormat
from router.remote_catalog import CatalogFetchError, CatalogFormatError, CatalogModels
from router.selection import ResolvedDeployment

# Ollama's default tag: ``ollama pull llama2`` lists ``llama2:latest``.
LATEST_TAG = ":latest"


def public_names(listed: str) -> tuple[str, ...]:
    """The names a listed model is served under: its own, and without Ollama's default tag."""
    if listed.endswith(LATEST_TAG) and len(listed) > len(LATEST_TAG):
        return listed, listed.removesuffix(LATEST_TAG)
    return (listed,)


def discovered_models(
    provider_name: str,
    provider: ProviderConfig,
    discovery: DiscoveryConfig,
    listed: Iterable[str],
    configured: Collection[str] = (),
    reserved_ids: Collection[str] = (),
    prices: Mapping[str, Price] | None = None,
) -> CatalogModels:
    """Deployments for the ``listed`` names; ``configured`` public names (the provider's own in the
    config) and ``reserved_ids`` (the config's deployment ids) are left alone; ``prices`` by upstream
    model."""
    prices = prices or {}
    deployments: list[ResolvedDeployment] = []
    taken = set(reserved_ids)
    for upstream in dict.fromkeys(listed):  # an upstream listing a name twice serves it once
        for name in public_names(upstream):
            deployment_id = f"{provider_name}/{name}"
            if name in configured or deployment_id in taken:
                continue
            taken.add(deployment_id)
            deployment = DeploymentConfig(
                id=deployment_id,
                model=name,
                provider=provider_name,
                upstream_model=upstream,
                priority=discovery.priority,
                price=prices.get(upstream) or list_price(provider_name, provider, upstream),
            )
            deployments.append((deployment, provider))
    return CatalogModels(tuple(deployments), ())


class DiscoveryListing:
    """One discovering provider, as the refresher fetches it (``catalog_refresh.Listing``)."""

    what = "model listing"

    def __init__(self, provider_name: str, provider: ProviderConfig, config: ModelRouterConfig) -> None:
        assert provider.discover is not None
        self.provider_name = provider_name
        self.provider = provider
        self.discovery = provider.discover
        self.refresh_s = provider.discover.refresh_s
        self.timeout_s = provider.discover.timeout_s
        self.format: ListingFormat | None = LISTING_FORMATS.get(provider.adapter)
        path = self.format.path if self.format is not None else ""
        self.url = provider.base_url.rstrip("/") + path
        own = [d for d in config.deployments if d.provider == provider_name]
        self._configured = frozenset(d.model for d in own)
        self._prices = {d.upstream_model or d.model: d.price for d in own if d.price != Price()}
        self._reserved_ids = frozenset(d.id for d in config.deployments)

    def headers(self, env: Mapping[str, str]) -> dict[str, str]:
        if self.format is None:
            raise CatalogFetchError(
                f"the adapter {self.provider.adapter!r} has no model listing "
                f"(discovery knows: {', '.join(sorted(LISTING_FORMATS))})"
            )
        if not self.provider.base_url:
            raise CatalogFetchError("the provider has no base_url to list models at")
        if not self.provider.api_key_env:
            return {}
        key = env.get(self.provider.api_key_env)
        if not key:
            raise CatalogFetchError(f"{self.provider.api_key_env} is not set")
        scheme = self.provider.options.get(AUTH_SCHEME_OPTION, "Bearer")
        return {"Authorization": f"{scheme} {key}"}

    def models_of(self, raw: bytes) -> CatalogModels:
        assert self.format is not None  # headers() refused before any fetch
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CatalogFormatError(f"the model listing is not JSON: {exc}") from None
        names = self.format.names(document)
        return discovered_models(
            self.provider_name, self.provider, self.discovery, names, self._configured, self._reserved_ids, self._prices
        )


def discovery_listings(config: ModelRouterConfig) -> list[DiscoveryListing]:
    return [
        DiscoveryListing(name, provider, config) for name, provider in config.providers.items() if provider.discover
    ]
