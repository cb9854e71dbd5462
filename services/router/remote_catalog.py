"""A provider's remote model catalogue turned into deployments the router can route to.

The document (``RemoteCatalogConfig.url``) is ``{"models": [{"model_version", "model_family",
"handle", "prompt_price_1k", "completion_price_1k", "paths"?}, ...]}``. Each entry becomes one deployment:

- public model name and upstream model = ``model_version``: it is the entry's model name (what a
  client asks for and the upstream recognises). ``handle`` is where the model is served — the full
  path of its endpoint on the catalogue's host (``/fireworks/chat/completions``) — not a name.
- base URL = the catalogue URL's scheme and host (with port); the handle goes as the Target option
  ``endpoint``, and requests go to exactly that path. Which operations it serves is the adapter's to
  tell (``workers.providers._endpoints``): the router knows paths, not APIs. The optional ``paths``
  (``{"embeddings": "/fireworks/embeddings"}``, keyed by operation) say where the model's other
  operations live, as ``endpoint:<operation>`` options. A handle or path naming another host
  (``https://...``, ``//host/...``) is refused: the catalogue's token goes with every request, and
  must never leave the catalogue's origin.
- adapter = ``families[model_family]``; an entry of an unmapped family is skipped (and logged), or,
  with ``infer_adapters``, takes the adapter its handle's path names (``router.handle_formats``).
- deployment id = ``<provider>/<model_version>``: stable across fetches and router replicas, so
  the health and rate-limit state in Redis follows the model, not the fetch.
- the key: the catalogue's ``token_env``, sent as ``Authorization: OAuth <token>`` (the Target option
  ``auth_scheme``), and the provider's timeout and options.

A document that is not that shape fails the whole fetch (the last good list stays); a single bad
entry is skipped, so one typo upstream does not hide every other model.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.config import (
    AUTH_SCHEME_OPTION,
    ENDPOINT_OPTION,
    DeploymentConfig,
    ModelRouterConfig,
    Price,
    ProviderConfig,
    RemoteCatalogConfig,
    endpoint_option,
)
from common.providers.base import Operation
from router.handle_formats import adapter_of_handle
from router.selection import ResolvedDeployment

log = logging.getLogger(__name__)

OAUTH_SCHEME = "OAuth"
# The operations an entry's ``paths`` may name (the keys of events.v1.Operation's names).
OPERATIONS = frozenset({Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS, Operation.IMAGES})


class CatalogFormatError(Exception):
    """The document is not a catalogue: the fetch fails as a whole."""


class CatalogFetchError(Exception):
    """A fetch that yielded no list; the message is what Status shows."""


class CatalogEntry(BaseModel):
    """One entry of ``models``; fields the router does not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    model_version: str = Field(min_length=1)
    model_family: str = Field(min_length=1)
    handle: str = Field(min_length=1)
    prompt_price_1k: float = Field(ge=0)
    completion_price_1k: float = Field(ge=0)
    # operation -> the full path of the endpoint serving it, where that is not the handle
    paths: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CatalogModels:
    """The deployments one document yields, and why the other entries were left out."""

    deployments: tuple[ResolvedDeployment, ...]
    skipped: tuple[str, ...]


def parse_document(raw: bytes) -> list[Any]:
    """The ``models`` list of a catalogue document (its entries still unchecked)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CatalogFormatError(f"the catalogue is not JSON: {exc}") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list):
        raise CatalogFormatError('the catalogue is not an object with a "models" list')
    return models


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without credentials, path, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def host_path(path: str, what: str = "handle") -> str:
    """``path`` as an absolute path on the catalogue's host; ValueError if it names another origin."""
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        raise ValueError(f"{what} {path!r} is not a path on the catalogue's host")
    return f"/{path.lstrip('/')}"


def endpoint_options(entry: CatalogEntry) -> dict[str, str]:
    """The Target options naming the entry's endpoints; ValueError for one that cannot be used."""
    options = {ENDPOINT_OPTION: host_path(entry.handle)}
    for operation, path in entry.paths.items():
        if operation not in OPERATIONS:
            raise ValueError(f"paths: unknown operation {operation!r} (known: {', '.join(sorted(OPERATIONS))})")
        options[endpoint_option(operation)] = host_path(path, f"paths.{operation}")
    return options


def catalog_models(
    provider_name: str,
    provider: ProviderConfig,
    catalog: RemoteCatalogConfig,
    entries: list[Any],
    reserved_ids: Collection[str] = (),
) -> CatalogModels:
    """Deployments for ``entries``; ``reserved_ids`` (the config's deployment ids) are never reused."""
    deployments: list[ResolvedDeployment] = []
    skipped: list[str] = []
    taken = set(reserved_ids)
    base_url = origin_of(catalog.url)  # one per catalogue: its models share the workers' connection pools
    options = dict(provider.options)
    if catalog.token_env:
        options[AUTH_SCHEME_OPTION] = OAUTH_SCHEME
    for index, raw in enumerate(entries):
        try:
            entry = CatalogEntry.model_validate(raw)
            endpoints = endpoint_options(entry)
        except (ValidationError, ValueError) as exc:
            skipped.append(f"models.{index}: {_reason(exc)}")
            continue
        adapter = catalog.families.get(entry.model_family)
        if adapter is None and catalog.infer_adapters:
            adapter = adapter_of_handle(entry.handle)
            if adapter is None:
                skipped.append(f"models.{index} ({entry.model_version}): no known API ends its handle {entry.handle!r}")
                continue
        if adapter is None:
            skipped.append(f"models.{index} ({entry.model_version}): unknown model_family {entry.model_family!r}")
            continue
        deployment_id = f"{provider_name}/{entry.model_version}"
        if deployment_id in taken:
            skipped.append(f"models.{index} ({entry.model_version}): duplicate deployment id {deployment_id!r}")
            continue
        taken.add(deployment_id)
        deployment = DeploymentConfig(
            id=deployment_id,
            model=entry.model_version,
            provider=provider_name,
            upstream_model=entry.model_version,
            priority=catalog.priority,
            base_url=base_url,
            price=Price(prompt_per_1k=entry.prompt_price_1k, completion_per_1k=entry.completion_price_1k),
            options=endpoints,
        )
        resolved_provider = ProviderConfig(
            adapter=adapter,
            api_key_env=catalog.token_env,
            timeout_s=provider.timeout_s,
            options=options,
        )
        deployments.append((deployment, resolved_provider))
    return CatalogModels(tuple(deployments), tuple(skipped))


def _reason(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors())
    return str(exc)


class CatalogListing:
    """One provider's remote catalogue, as the refresher fetches it (``catalog_refresh.Listing``)."""

    what = "catalogue"

    def __init__(self, provider_name: str, provider: ProviderConfig, config: ModelRouterConfig) -> None:
        assert provider.catalog is not None
        self.provider_name = provider_name
        self.provider = provider
        self.catalog = provider.catalog
        self.url = provider.catalog.url
        self.refresh_s = provider.catalog.refresh_s
        self.timeout_s = provider.catalog.timeout_s
        # Catalogue ids are "<provider>/<model>"; the config's own ids must never be shadowed by one.
        self._config_ids = frozenset(d.id for d in config.deployments)

    def headers(self, env: Mapping[str, str]) -> dict[str, str]:
        if not self.catalog.token_env:
            return {}
        token = env.get(self.catalog.token_env)
        if not token:
            raise CatalogFetchError(f"{self.catalog.token_env} is not set")
        return {"Authorization": f"{OAUTH_SCHEME} {token}"}

    def models_of(self, raw: bytes) -> CatalogModels:
        entries = parse_document(raw)
        return catalog_models(self.provider_name, self.provider, self.catalog, entries, self._config_ids)


def catalog_listings(config: ModelRouterConfig) -> list[CatalogListing]:
    return [CatalogListing(name, provider, config) for name, provider in config.providers.items() if provider.catalog]
