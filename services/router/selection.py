"""Which deployments may serve a model: the config turned into ready-made ``Target`` protos.

Everything here is derived from the config once at start (and again whenever a remote catalogue
brings a new model list); the per-request work is a dict lookup and a filter. Whether a candidate is
usable *now* (health, rate limits) is Redis's business (``router.state``), never cached in the
process, so every replica sees the same picture.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.config import DeploymentConfig, ModelRouterConfig, ProviderConfig
from common.errors import NotFoundError
from modelrouter.router.v1 import router_pb2

# ModelRouter does not know when an upstream created a model; a fixed timestamp (the day the
# router API was defined) keeps ListModels identical across replicas and restarts.
MODELS_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model, with its limits (0 = none) and its pre-built Target."""

    deployment_id: str
    rpm: int
    tpm: int
    target: router_pb2.Target


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
    )


# A deployment with the provider it resolves against: a config entry, or one made from a catalogue.
ResolvedDeployment = tuple[DeploymentConfig, ProviderConfig]


class RoutingTable(Protocol):
    """What the servicer asks of its model list: ``Catalog``, or ``LiveCatalog`` in front of one."""

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]: ...

    def knows_deployment(self, deployment_id: str) -> bool: ...

    @property
    def models(self) -> router_pb2.ListModelsResponse: ...


class Catalog:
    """Public models -> candidate deployments in priority order (ties keep config order)."""

    def __init__(self, by_model: Mapping[str, tuple[Candidate, ...]], owners: Mapping[str, str]) -> None:
        self._by_model = dict(by_model)
        self._deployment_ids = frozenset(c.deployment_id for cs in by_model.values() for c in cs)
        self._models = router_pb2.ListModelsResponse(
            models=[
                router_pb2.Model(id=model, owned_by=owner, created=MODELS_CREATED) for model, owner in owners.items()
            ]
        )

    @classmethod
    def from_config(cls, config: ModelRouterConfig, extra: Iterable[ResolvedDeployment] = ()) -> Catalog:
        """The config's deployments, then ``extra`` (catalogue models), merged per public model."""
        static = [(dep, config.providers[dep.provider]) for dep in config.deployments]
        return cls.from_deployments([*static, *extra])

    @classmethod
    def from_deployments(cls, deployments: Sequence[ResolvedDeployment]) -> Catalog:
        """Candidates per model by priority; the sort is stable, so equal priorities keep list order.
        A model's owner (ListModels' ``owned_by``) is the provider of its first deployment."""
        by_model: dict[str, list[Candidate]] = {}
        owners: dict[str, str] = {}
        for dep, provider in sorted(deployments, key=lambda pair: pair[0].priority):
            owners.setdefault(dep.model, dep.provider)
            by_model.setdefault(dep.model, []).append(
                Candidate(deployment_id=dep.id, rpm=dep.rpm or 0, tpm=dep.tpm or 0, target=build_target(dep, provider))
            )
        return cls({model: tuple(candidates) for model, candidates in by_model.items()}, owners)

    def candidates(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        """The model's deployments minus ``exclude``; NotFoundError if the model is unknown."""
        try:
            all_candidates = self._by_model[model]
        except KeyError:
            raise NotFoundError(f"The model `{model}` does not exist", param="model") from None
        if not exclude:
            return list(all_candidates)
        return [c for c in all_candidates if c.deployment_id not in exclude]

    def knows_deployment(self, deployment_id: str) -> bool:
        return deployment_id in self._deployment_ids

    @property
    def models(self) -> router_pb2.ListModelsResponse:
        return self._models


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

    def knows_deployment(self, deployment_id: str) -> bool:
        return self._current.knows_deployment(deployment_id)

    @property
    def models(self) -> router_pb2.ListModelsResponse:
        return self._current.models
