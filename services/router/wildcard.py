"""Wildcard deployments (``model: "*"``): any model name no other deployment serves, sent upstream as
asked, tried in priority order. Seed 001's ``ROUTER_SERVICES`` backends are these
(``common.seed_settings``): its users ask for whatever their backends serve, and the router fails over
from one backend to the next.

``WildcardTable`` stands in front of the ``LiveCatalog`` (which never sees the wildcard deployments):

- a name the catalog serves (config, catalogue, discovery) is the catalog's, unchanged;
- any other name gets the wildcard deployments, each a copy of its Target with ``upstream_model`` set
  to the name; the copies are kept per name (bounded), so a name's second request builds nothing;
- every wildcard deployment keeps one deployment id whatever the name, so its health and rate limit
  (the service's ``rate_limit_requests``) are the backend's, shared by every name and router replica;
- a wildcard provider's discovered models (``discover``) are listed in ListModels under its name,
  not routed as deployments of their own: a listed name is still served by every backend in priority
  order, and counted in the one rate limit of each.

A config without wildcard deployments gets the ``LiveCatalog`` itself (``routing_table``): nothing is
added in front of the common case.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from common.config import WILDCARD_MODEL, ModelRouterConfig
from common.errors import NotFoundError
from modelrouter.router.v1 import router_pb2
from router import strategies
from router.selection import MODELS_CREATED, Candidate, Catalog, LiveCatalog, ModelRoute, ResolvedDeployment

# Names whose candidates are kept; past it the cache starts over (a client cycling through random
# names must not grow the router without bound).
MAX_CACHED_NAMES = 1024


class WildcardTable:
    """The routing table of a config with wildcard deployments (see the module's docstring)."""

    def __init__(self, config: ModelRouterConfig) -> None:
        named = [d for d in config.deployments if d.model != WILDCARD_MODEL]
        wild = [(d, config.providers[d.provider]) for d in config.deployments if d.model == WILDCARD_MODEL]
        self._inner = LiveCatalog(config.model_copy(update={"deployments": named}))
        # Priority order, Targets built once: the catalog's own construction, under the name "*".
        self._templates = tuple(Catalog.from_deployments(wild).candidates(WILDCARD_MODEL))
        self._wildcard_ids = frozenset(c.deployment_id for c in self._templates)
        self._wildcard_providers = [name for name in config.providers if any(d.provider == name for d, _ in wild)]
        self._by_name: dict[str, ModelRoute] = {}
        self._listed: dict[str, tuple[str, ...]] = {}  # wildcard provider -> the names it discovered
        self._models: tuple[object, object, router_pb2.ListModelsResponse] | None = None

    def route_of(self, model: str, prompt_class: str = "") -> ModelRoute:
        # A name cached here was not the catalog's when it was cached, and every change of the
        # catalog empties the cache (``replace``): a repeated wildcard name skips the catalog's
        # NotFoundError, a named model costs one dict miss.
        route = self._by_name.get(model)
        if route is None:
            try:
                return self._inner.route_of(model, prompt_class)
            except NotFoundError:
                if model == WILDCARD_MODEL:  # not a name: "*" goes to no upstream
                    raise
            route = self._for_name(model)
        return route

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        candidates = self.route_of(model).candidates
        if not exclude:
            return list(candidates)
        return [c for c in candidates if c.deployment_id not in exclude]

    def _for_name(self, model: str) -> ModelRoute:
        candidates = []
        for template in self._templates:
            target = router_pb2.Target()
            target.CopyFrom(template.target)
            target.upstream_model = target.model = model
            candidates.append(Candidate(template.deployment_id, template.rpm, template.tpm, target, template.priority))
        if len(self._by_name) >= MAX_CACHED_NAMES:
            self._by_name = {}
        self._by_name[model] = route = ModelRoute(
            model=model,
            strategy=strategies.PRIORITY,
            candidates=tuple(candidates),
            reason=f"{strategies.REASONS[strategies.PRIORITY].capitalize()}, over the backends that serve any model.",
        )
        return route

    def knows_deployment(self, deployment_id: str) -> bool:
        return deployment_id in self._wildcard_ids or self._inner.knows_deployment(deployment_id)

    def replace(self, provider: str, deployments: Iterable[ResolvedDeployment]) -> None:
        """A refresher's new list: a wildcard provider's discovered names are listed; any other
        provider's deployments go to the catalog."""
        if provider in self._wildcard_providers:
            names = tuple(dict.fromkeys(d.model for d, _ in deployments))
            self._listed = {**self._listed, provider: names}  # one reference swap: readers need no lock
        else:
            self._inner.replace(provider, deployments)
            self._by_name = {}  # a name cached as a wildcard's may be the catalog's now

    @property
    def models(self) -> router_pb2.ListModelsResponse:
        inner, listed = self._inner.models, self._listed
        cached = self._models
        if cached is not None and cached[0] is inner and cached[1] is listed:
            return cached[2]
        response = router_pb2.ListModelsResponse()
        response.CopyFrom(inner)
        seen = {m.id for m in inner.models}
        for provider in self._wildcard_providers:  # config order, as the catalog merges its lists
            for name in listed.get(provider, ()):
                if name not in seen:
                    seen.add(name)
                    response.models.add(id=name, owned_by=provider, created=MODELS_CREATED)
        self._models = (inner, listed, response)
        return response

    def __getattr__(self, name: str) -> Any:
        # Whatever else a routing table offers (the current catalog, an overview) is the catalog's.
        return getattr(self._inner, name)


def routing_table(config: ModelRouterConfig) -> LiveCatalog | WildcardTable:
    """The router's table for ``config``: the catalog, behind a WildcardTable only if it needs one."""
    if any(d.model == WILDCARD_MODEL for d in config.deployments):
        return WildcardTable(config)
    return LiveCatalog(config)
