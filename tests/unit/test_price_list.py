"""The shipped price list and how a deployment's price is decided: its own ``price`` in the config,
else the list's (by provider and upstream model), else unknown (never free)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from common.config import ConfigError, load_config, parse_config
from common.price_list import DEFAULT_PRICE_LIST_PATH, PriceListError, context_window, load_price_list, per_1k
from common.pricing import price_to_decimal, request_cost
from router.selection import build_target

CONFIG = """
providers:
  openai: {adapter: openai, base_url: "https://api.openai.com/v1"}
  my-openai: {adapter: openai, base_url: "https://proxy.example/v1", price_list: openai}
  ollama: {adapter: ollama, base_url: "http://localhost:11434"}
  house: {adapter: openai, base_url: "http://10.0.0.5/v1"}
deployments:
  - {id: listed, model: gpt-4o, provider: openai, upstream_model: gpt-4o}
  - {id: own-price, model: gpt-4o, provider: openai, upstream_model: gpt-4o, priority: 1,
     price: {prompt_per_1k: 0.002, completion_per_1k: 0.008}}
  - {id: by-list-name, model: mini, provider: my-openai, upstream_model: gpt-4o-mini}
  - {id: self-hosted, model: llama, provider: ollama, upstream_model: llama3.2}
  - {id: not-listed, model: house, provider: house, upstream_model: house-model-7b}
  - {id: public-name, model: gpt-4o-mini, provider: openai}
"""


def _deployments() -> dict[str, object]:
    config = parse_config(CONFIG)
    return {d.id: d for d in config.deployments}


def test_a_deployment_without_a_price_takes_the_lists_in_usd_per_1k() -> None:
    price = _deployments()["listed"].price  # type: ignore[attr-defined]
    # gpt-4o: $2.50 / $1.25 cached / $10.00 per 1M tokens
    assert (price.prompt_per_1k, price.cached_prompt_per_1k, price.completion_per_1k, price.unknown) == (
        0.0025,
        0.00125,
        0.01,
        False,
    )


def test_the_config_overrides_the_list_as_a_whole() -> None:
    price = _deployments()["own-price"].price  # type: ignore[attr-defined]
    assert (price.prompt_per_1k, price.completion_per_1k, price.cached_prompt_per_1k) == (0.002, 0.008, None)


def test_a_provider_may_name_the_list_entry_that_prices_it() -> None:
    price = _deployments()["by-list-name"].price  # type: ignore[attr-defined]
    assert (price.prompt_per_1k, price.cached_prompt_per_1k) == (0.00015, 0.000075)


def test_self_hosted_providers_are_listed_as_free_for_any_model() -> None:
    price = _deployments()["self-hosted"].price  # type: ignore[attr-defined]
    assert (price.prompt_per_1k, price.completion_per_1k, price.unknown) == (0.0, 0.0, False)


def test_a_model_nobody_priced_is_unknown_not_free() -> None:
    price = _deployments()["not-listed"].price  # type: ignore[attr-defined]
    assert price.unknown
    target = build_target(_deployments()["not-listed"], parse_config(CONFIG).providers["house"])  # type: ignore[arg-type]
    assert target.price.unknown and request_cost(100, 100, 0, target.price) is None


def test_the_upstream_model_defaults_to_the_public_name_for_the_lookup() -> None:
    assert _deployments()["public-name"].price.prompt_per_1k == 0.00015  # type: ignore[attr-defined]


def test_the_target_carries_the_cached_price_and_a_cached_answer_is_billed_with_it() -> None:
    config = parse_config(CONFIG)
    target = build_target(config.deployments[0], config.providers["openai"])
    assert target.price.HasField("cached_prompt_per_1k") and not target.price.unknown
    cost = request_cost(1000, 100, 600, target.price)
    # 400 * 2.5e-6 + 600 * 1.25e-6 = 0.00175; 100 * 1e-5 = 0.001
    assert cost is not None and (cost.input, cost.output) == (Decimal("0.00175"), Decimal("0.001"))
    # Without a cached price (the config's own), cached tokens are billed as prompt tokens.
    own = build_target(config.deployments[1], config.providers["openai"])
    assert not own.price.HasField("cached_prompt_per_1k")
    assert request_cost(1000, 0, 600, own.price).input == Decimal("0.002")  # type: ignore[union-attr]


def test_list_prices_convert_to_the_exact_decimal_per_1k() -> None:
    assert price_to_decimal(per_1k(0.15)) == Decimal("0.00015")
    assert price_to_decimal(per_1k(0.075)) == Decimal("0.000075")
    assert price_to_decimal(per_1k(0.0375)) == Decimal("0.0000375")


def test_the_shipped_list_is_dated_and_prices_every_hosted_model_the_shipped_config_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prices = load_price_list()
    assert prices.as_of.year >= 2025
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "COHERE_API_KEY",
        "MISTRAL_API_KEY",
        "CEREBRAS_API_KEY",
        "DEEPINFRA_API_KEY",
        "FIREWORKS_API_KEY",
        "GROQ_API_KEY",
        "TOGETHER_API_KEY",
        "HF_TOKEN",
    ):
        monkeypatch.setenv(name, "x")
    config = load_config(str(Path(DEFAULT_PRICE_LIST_PATH).parent / "modelrouter.yaml"))
    unknown = {d.id for d in config.deployments if d.price.unknown}
    # HuggingFace's router prices by the provider it picks for the model: no one list price.
    assert unknown == {"hf-llama"}
    assert len({d.provider for d in config.deployments}) >= 12


def test_context_windows_come_from_the_list() -> None:
    assert context_window("anthropic", "claude-sonnet-4-5") == 200_000
    assert context_window("openai", "no-such-model") is None
    config = parse_config(CONFIG)
    by_id = {d.id: d for d in config.deployments}
    assert config.listed_context_window(by_id["by-list-name"]) == 128_000
    assert config.listed_context_window(by_id["not-listed"]) is None


def test_a_broken_price_list_names_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text('as_of: "2025-08-15"\nproviders:\n  openai:\n    gpt-x: {input: -1}\n')
    with pytest.raises(PriceListError, match=r"providers\.openai\.gpt-x\.input"):
        load_price_list(bad)


def test_a_price_list_that_cannot_load_stops_the_config_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise PriceListError("prices.yaml: cannot read the price list")

    monkeypatch.setattr("common.config.load_price_list", broken)
    with pytest.raises(ConfigError, match="cannot read the price list"):
        parse_config(CONFIG)
