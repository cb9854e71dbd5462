"""Which deployments may serve a model: the config turned into ready-made ``Target`` protos.

Everything here is derived from the config once at start; the per-request work is a dict lookup
and a filter. Whether a candidate is usable *now* (health, rate limits) is Redis's business
(``router.state``), never cached in the process, so every replica sees the same picture.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

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
        ),
        timeout_s=deployment.timeout_s or provider.timeout_s,
        options=options,
    )


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
    def from_config(cls, config: ModelRouterConfig) -> Catalog:
        owners = config.models()
        by_model = {
            model: tuple(
                Candidate(
                    deployment_id=dep.id,
                    rpm=dep.rpm or 0,
                    tpm=dep.tpm or 0,
                    target=build_target(dep, config.providers[dep.provider]),
                )
                # deployments_for sorts stably by priority, so equal priorities keep config order.
                for dep in config.deployments_for(model)
            )
            for model in owners
        }
        return cls(by_model, owners)

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
