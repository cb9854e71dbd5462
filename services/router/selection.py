"""Which deployments may serve a model: the config turned into ready-made ``Target`` protos.

Everything here is derived from the config once at start (and again whenever a remote catalogue
brings a new model list); the per-request work is a dict lookup and a filter. Whether a candidate is
usable *now* (health, rate limits) is Redis's business (``router.state``), never cached in the
process, so every replica sees the same picture.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from common.config import DeploymentConfig, ModelRouterConfig, ProviderConfig
from common.errors import NotFoundError
from modelrouter.router.v1 import router_pb2
from router import strategies

# ModelRouter does not know when an upstream created a model; a fixed timestamp (the day the
# router API was defined) keeps ListModels identical across replicas and restarts.
MODELS_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z
# The model name that asks the router to choose by the prompt's class (config ``auto``).
AUTO_MODEL = "auto"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model, with its limits (0 = none) and its pre-built Target."""

    deployment_id: str
    rpm: int
    tpm: int
    target: router_pb2.Target
    priority: int = 0
    weight: float = 1.0

    @property
    def blended_price(self) -> float:
        """What the cost strategy ranks by: USD per 1k prompt plus 1k completion tokens."""
        return self.target.price.prompt_per_1k + self.target.price.completion_per_1k

    def fits(self, tokens: int) -> bool:
        window = self.target.context_window
        return not window or tokens <= window


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """How one public model (or one class of ``auto``) is routed: its candidates in the order the
    pick walks them, its strategy, and the models to fall back to."""

    model: str
    strategy: str
    candidates: tuple[Candidate, ...]
    fallbacks: tuple[str, ...] = ()
    prompt_class: str = ""
    # Some candidate declares a context window: only then is a request's size checked.
    sized: bool = False
    reason: str = ""

    def usable(self, exclude: Collection[str], tokens: int) -> list[Candidate]:
        """The candidates minus ``exclude``, and minus those ``tokens`` does not fit."""
        out = [c for c in self.candidates if c.deployment_id not in exclude] if exclude else list(self.candidates)
        if self.sized:
            out = [c for c in out if c.fits(tokens)]
        return out

    def strategy_args(self, candidates: Sequence[Candidate]) -> list[str | float]:
        return strategies.lua_args(self.strategy, candidates)


def build_target(deployment: DeploymentConfig, provider: ProviderConfig) -> router_pb2.Target:
    """Resolve a deployment against its provider: deployment values win, provider values fill in."""
    options = dict(provider.options)
    options.update(deployment.options)
    return router_pb2.Target(
        deployment_id=deployment.id,
        provider=provider.adapter,
        upstream_model=deployment.upstream_model or deployment.model,
        base_url=deployment.base_url or provider.base_url,
        api_key_env=provider.api_key_env,
        price=router_pb2.Price(
            prompt_per_1k=deployment.price.prompt_per_1k,
            completion_per_1k=deployment.price.completion_per_1k,
            cached_prompt_per_1k=deployment.price.cached_prompt_per_1k,  # None: not set
            unknown=deployment.price.unknown,
        ),
        timeout_s=deployment.timeout_s or provider.timeout_s,
        options=options,
        model=deployment.model,
        context_window=deployment.context_window or 0,
    )


def candidate_of(deployment: DeploymentConfig, provider: ProviderConfig, strategy: str) -> Candidate:
    target = build_target(deployment, provider)
    target.report_outcome = strategies.needs_outcomes(strategy)
    return Candidate(
        deployment_id=deployment.id,
        rpm=deployment.rpm or 0,
        tpm=deployment.tpm or 0,
        target=target,
        priority=deployment.priority,
        weight=deployment.weight,
    )


# A deployment with the provider it resolves against: a config entry, or one made from a catalogue.
ResolvedDeployment = tuple[DeploymentConfig, ProviderConfig]


class RoutingTable(Protocol):
    """What the servicer asks of its model list: ``Catalog``, or ``LiveCatalog`` in front of one."""

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]: ...

    def route_of(self, model: str, prompt_class: str = "") -> ModelRoute: ...

    def has_model(self, model: str) -> bool: ...

    def knows_deployment(self, deployment_id: str) -> bool: ...

    def health_group(self, deployment_id: str) -> tuple[tuple[str, ...], bool]: ...

    @property
    def routes(self) -> Mapping[str, ModelRoute]: ...

    @property
    def models(self) -> router_pb2.ListModelsResponse: ...


class Catalog:
    """Public models -> their routes: candidate deployments in the strategy's order (ties keep
    priority, then config order), plus ``auto``'s routes per prompt class."""

    def __init__(
        self,
        by_model: Mapping[str, ModelRoute],
        owners: Mapping[str, str],
        auto: Mapping[str, ModelRoute] | None = None,
    ) -> None:
        self._by_model = dict(by_model)
        self._auto = dict(auto or {})
        self._deployment_ids = frozenset(c.deployment_id for r in by_model.values() for c in r.candidates)
        # Per deployment: its model's other deployments (the ejection cap counts them), and whether
        # some route's pick counts it in flight (its outcomes then end that count).
        groups: dict[str, tuple[tuple[str, ...], bool]] = {}
        counted = {
            c.deployment_id
            for r in (*self._by_model.values(), *self._auto.values())
            if strategies.needs_outcomes(r.strategy)
            for c in r.candidates
        }
        for route in self._by_model.values():
            ids = tuple(c.deployment_id for c in route.candidates)
            for dep in ids:
                groups[dep] = (tuple(d for d in ids if d != dep), dep in counted)
        self._groups = groups
        listed = dict(owners)
        if self._auto:
            listed.setdefault(AUTO_MODEL, "modelrouter")
        self._models = router_pb2.ListModelsResponse(
            models=[
                router_pb2.Model(id=model, owned_by=owner, created=MODELS_CREATED) for model, owner in listed.items()
            ]
        )

    @classmethod
    def from_config(cls, config: ModelRouterConfig, extra: Iterable[ResolvedDeployment] = ()) -> Catalog:
        """The config's deployments, then ``extra`` (catalogue models), merged per public model."""
        static = [(dep, config.providers[dep.provider]) for dep in config.deployments]
        return cls.from_deployments([*static, *extra], config)

    @classmethod
    def from_deployments(
        cls, deployments: Sequence[ResolvedDeployment], config: ModelRouterConfig | None = None
    ) -> Catalog:
        """Routes per model; a model's owner (ListModels' ``owned_by``) is the provider of its
        first deployment by priority. ``config`` brings strategies, fallbacks and ``auto``."""
        config = config or ModelRouterConfig()
        by_model: dict[str, list[ResolvedDeployment]] = {}
        owners: dict[str, str] = {}
        for dep, provider in sorted(deployments, key=lambda pair: pair[0].priority):
            owners.setdefault(dep.model, dep.provider)
            by_model.setdefault(dep.model, []).append((dep, provider))
        routes = {}
        for model, pairs in by_model.items():
            settings = config.per_model.get(model)
            strategy = settings.strategy if settings else strategies.PRIORITY
            routes[model] = _route(model, strategy, [candidate_of(dep, provider, strategy) for dep, provider in pairs])
            routes[model] = _with_fallbacks(routes[model], tuple(config.fallbacks.get(model, ())))
        auto: dict[str, ModelRoute] = {}
        if config.auto is not None:
            for prompt_class, models in config.auto.classes.items():
                pairs = [pair for m in dict.fromkeys(models) for pair in by_model.get(m, ())]
                route = _route(
                    AUTO_MODEL,
                    config.auto.strategy,
                    [candidate_of(dep, provider, config.auto.strategy) for dep, provider in pairs],
                )
                # ``fallbacks: {auto: [...]}`` serves every class whose models cannot (none configured
                # offline, all out): the shipped config falls back to the fake demo model.
                route = _with_fallbacks(route, tuple(config.fallbacks.get(AUTO_MODEL, ())))
                auto[prompt_class] = _classed(route, prompt_class, models)
        return cls(routes, owners, auto)

    def route_of(self, model: str, prompt_class: str = "") -> ModelRoute:
        """The route of ``model`` (``auto``: of the prompt's class, ``general`` when it has none);
        NotFoundError if the model is unknown."""
        if model == AUTO_MODEL and self._auto:
            route = self._auto.get(prompt_class or "general") or self._auto.get("general")
            if route is None:
                raise NotFoundError(f"auto routing has no candidates for prompt class {prompt_class!r}", param="model")
            return route
        try:
            return self._by_model[model]
        except KeyError:
            raise NotFoundError(f"The model `{model}` does not exist", param="model") from None

    def has_model(self, model: str) -> bool:
        return model in self._by_model

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        """The model's deployments minus ``exclude``; NotFoundError if the model is unknown."""
        all_candidates = self.route_of(model).candidates
        if not exclude:
            return list(all_candidates)
        return [c for c in all_candidates if c.deployment_id not in exclude]

    def knows_deployment(self, deployment_id: str) -> bool:
        return deployment_id in self._deployment_ids

    def health_group(self, deployment_id: str) -> tuple[tuple[str, ...], bool]:
        """The other deployments of its model, and whether a pick counts it in flight."""
        return self._groups.get(deployment_id, ((), False))

    @property
    def routes(self) -> Mapping[str, ModelRoute]:
        return self._by_model

    @property
    def models(self) -> router_pb2.ListModelsResponse:
        return self._models


def _route(model: str, strategy: str, candidates: list[Candidate]) -> ModelRoute:
    ordered = tuple(strategies.order(strategy, candidates))
    return ModelRoute(
        model=model,
        strategy=strategy,
        candidates=ordered,
        sized=any(c.target.context_window for c in ordered),
        reason=f"{strategies.REASONS[strategy].capitalize()}.",
    )


def _with_fallbacks(route: ModelRoute, fallbacks: tuple[str, ...]) -> ModelRoute:
    return route if not fallbacks else replace(route, fallbacks=fallbacks)


def _classed(route: ModelRoute, prompt_class: str, models: Sequence[str]) -> ModelRoute:
    reason = f"The prompt reads as {prompt_class}, so among {', '.join(models)}: {strategies.REASONS[route.strategy]}."
    return replace(route, prompt_class=prompt_class, reason=reason)


class LiveCatalog:
    """The routing table when remote catalogues exist: the config's deployments plus each catalogue's
    latest good list. A new list builds a whole new ``Catalog`` and swaps the reference, so a Route
    never sees half an update and the per-request path stays a dict lookup."""

    def __init__(self, config: ModelRouterConfig) -> None:
        self._config = config
        self._remote: dict[str, tuple[ResolvedDeployment, ...]] = {}
        self._current = Catalog.from_config(config)

    def replace(self, provider: str, deployments: Iterable[ResolvedDeployment]) -> None:
        """Serve ``deployments`` as ``provider``'s catalogue models from now on. Callers serialise
        calls (the refresher runs them in a thread, one at a time); readers need no lock, since the
        table is swapped with one reference assignment."""
        self._remote[provider] = tuple(deployments)
        # Config order of providers, so the merged order does not depend on which fetch finished first.
        extra = [d for name in self._config.providers for d in self._remote.get(name, ())]
        self._current = Catalog.from_config(self._config, extra)

    @property
    def current(self) -> Catalog:
        return self._current

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        return self._current.candidates(model, exclude)

    def route_of(self, model: str, prompt_class: str = "") -> ModelRoute:
        return self._current.route_of(model, prompt_class)

    def has_model(self, model: str) -> bool:
        return self._current.has_model(model)

    def knows_deployment(self, deployment_id: str) -> bool:
        return self._current.knows_deployment(deployment_id)

    def health_group(self, deployment_id: str) -> tuple[tuple[str, ...], bool]:
        return self._current.health_group(deployment_id)

    @property
    def routes(self) -> Mapping[str, ModelRoute]:
        return self._current.routes

    @property
    def models(self) -> router_pb2.ListModelsResponse:
        return self._current.models
