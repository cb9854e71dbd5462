"""The router's view of the config: candidates per model, resolved Targets, the models list."""

from __future__ import annotations

import pytest

from common.config import parse_config
from common.errors import NotFoundError
from router.selection import MODELS_CREATED, Catalog

CONFIG = """
providers:
  local:
    adapter: fake
    base_url: http://provider.example/v1
    api_key_env: LOCAL_KEY
    timeout_s: 12
    options: {latency_ms: "5", mode: provider}
  remote:
    adapter: openai
    base_url: https://remote.example/v1
deployments:
  - {id: chat-late, model: chat, provider: local, priority: 5}
  - {id: chat-first-tie, model: chat, provider: remote, upstream_model: up-a, priority: 1}
  - {id: chat-second-tie, model: chat, provider: local, upstream_model: up-b, priority: 1}
  - {id: chat-urgent, model: chat, provider: remote, upstream_model: up-c, priority: -3}
  - id: embed-override
    model: embed
    provider: local
    upstream_model: embed-upstream
    base_url: http://override.example/v2
    timeout_s: 3.5
    rpm: 40
    tpm: 9000
    price: {prompt_per_1k: 0.25, completion_per_1k: 1.5}
    options: {mode: deployment, extra: "x"}
"""


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_config(parse_config(CONFIG))


def test_candidates_follow_priority_and_ties_keep_config_order(catalog: Catalog) -> None:
    ids = [c.deployment_id for c in catalog.candidates("chat")]
    assert ids == ["chat-urgent", "chat-first-tie", "chat-second-tie", "chat-late"]


def test_excluded_deployments_are_dropped_keeping_order(catalog: Catalog) -> None:
    ids = [c.deployment_id for c in catalog.candidates("chat", ["chat-urgent", "chat-second-tie"])]
    assert ids == ["chat-first-tie", "chat-late"]
    assert catalog.candidates("chat", ["chat-urgent", "chat-first-tie", "chat-second-tie", "chat-late"]) == []


def test_unknown_model_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError) as info:
        catalog.candidates("no-such-model")
    assert "no-such-model" in info.value.message
    assert info.value.code == "model_not_found"


def test_deployment_values_override_provider_values(catalog: Catalog) -> None:
    [candidate] = catalog.candidates("embed")
    target = candidate.target
    assert (candidate.rpm, candidate.tpm) == (40, 9000)
    assert target.deployment_id == "embed-override"
    assert target.provider == "fake"  # the provider's adapter, not its config key "local"
    assert target.upstream_model == "embed-upstream"
    assert target.base_url == "http://override.example/v2"
    assert target.api_key_env == "LOCAL_KEY"
    assert target.timeout_s == 3.5
    assert (target.price.prompt_per_1k, target.price.completion_per_1k) == (0.25, 1.5)
    assert dict(target.options) == {"latency_ms": "5", "mode": "deployment", "extra": "x"}


def test_provider_values_fill_in_and_upstream_model_defaults_to_public_name(catalog: Catalog) -> None:
    by_id = {c.deployment_id: c for c in catalog.candidates("chat")}
    late = by_id["chat-late"]
    assert (late.rpm, late.tpm) == (0, 0)
    assert late.target.upstream_model == "chat"
    assert late.target.base_url == "http://provider.example/v1"
    assert late.target.timeout_s == 12
    assert dict(late.target.options) == {"latency_ms": "5", "mode": "provider"}
    remote = by_id["chat-urgent"].target
    assert (remote.provider, remote.base_url, remote.api_key_env) == ("openai", "https://remote.example/v1", "")
    assert remote.timeout_s == 60.0  # ProviderConfig's default
    assert remote.recent_failures == 0


def test_list_models_owned_by_provider_key_with_stable_created(catalog: Catalog) -> None:
    models = {m.id: m for m in catalog.models.models}
    assert set(models) == {"chat", "embed"}
    # owned_by is the provider's config key of the model's first deployment by priority.
    assert models["chat"].owned_by == "remote"
    assert models["embed"].owned_by == "local"
    again = Catalog.from_config(parse_config(CONFIG)).models
    assert [m.created for m in again.models] == [MODELS_CREATED, MODELS_CREATED]
    assert catalog.models == again


def test_knows_only_configured_deployments(catalog: Catalog) -> None:
    assert catalog.knows_deployment("embed-override")
    assert not catalog.knows_deployment("embed")
