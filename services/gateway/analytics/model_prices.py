"""``GET /v1/analytics/models`` (seed 003): the models the router serves (its ListModels), each with
the price its first deployment bills at, per 1M tokens.

Prices come from the config this gateway loaded: the same ``Target.price`` the router hands out for
that deployment and accounting bills with, so the list agrees with the stored costs. A model the
config does not name (a remote catalogue's) has no known price here: null, never 0. The context
window is null until the config declares one.
"""

from __future__ import annotations

from typing import Any

from common.config import ModelRouterConfig
from gateway.keyring import Principal
from modelrouter.router.v1 import router_pb2

PER_1K_TO_PER_1M = 1000


def _price(config: ModelRouterConfig | None, model: str) -> tuple[float | None, float | None]:
    deployments = config.deployments_for(model) if config is not None else []
    if not deployments:
        return None, None
    price = deployments[0].price
    return round(price.prompt_per_1k * PER_1K_TO_PER_1M, 9), round(price.completion_per_1k * PER_1K_TO_PER_1M, 9)


def model_list(
    models: list[router_pb2.Model], config: ModelRouterConfig | None, caller: Principal
) -> list[dict[str, Any]]:
    """Seed 003's entries, in the router's order; a key with an allow-list sees only its models."""
    visible = [m for m in models if not caller.models or m.id in caller.models]
    out = []
    for number, m in enumerate(visible, start=1):
        prompt, completion = _price(config, m.id)
        out.append(
            {
                "id": number,
                "model_id": m.id,
                "display_name": m.id,
                "provider": m.owned_by,
                "input_price_per_1m_tokens": prompt,
                "output_price_per_1m_tokens": completion,
                "context_window": None,
                # Listed by the router: it has a deployment to route to.
                "is_active": True,
            }
        )
    return out
