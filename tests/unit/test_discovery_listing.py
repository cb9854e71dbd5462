"""Discovery's pieces (router.discovery, router.listing_formats) and seed 002's handle inference
(router.handle_formats), without a network."""

from __future__ import annotations

import orjson
import pytest

from common.config import parse_config
from router.discovery import DiscoveryListing, discovered_models, public_names
from router.handle_formats import adapter_of_handle
from router.remote_catalog import CatalogFetchError, CatalogFormatError, catalog_models
from tests.integration.catalog_server import entry
from tests.integration.listing_server import ollama_listing, openai_listing

CONFIG = """
providers:
  oai: {adapter: openai, base_url: "http://up.example/v1/", api_key_env: OAI_KEY, discover: true}
  local: {adapter: ollama, base_url: "http://ollama.example:11434", discover: {refresh_s: 5, priority: 3}}
  tgi: {adapter: tgi, base_url: "http://tgi.example", discover: true}
  plain: {adapter: openai, base_url: "http://plain.example/v1"}
deployments:
  - {id: mini, model: gpt-4o-mini, provider: oai, price: {prompt_per_1k: 0.15}}
  - {id: my-turbo, model: turbo, provider: oai, upstream_model: gpt-3.5-turbo,
     price: {prompt_per_1k: 0.5, completion_per_1k: 1.5}}
"""


def listing(provider: str) -> DiscoveryListing:
    config = parse_config(CONFIG)
    return DiscoveryListing(provider, config.providers[provider], config)


def test_discover_true_takes_the_defaults_and_a_mapping_its_own() -> None:
    config = parse_config(CONFIG)
    assert config.providers["oai"].discover is not None and config.providers["oai"].discover.refresh_s == 300
    local = config.providers["local"].discover
    assert local is not None and (local.refresh_s, local.priority) == (5, 3)
    assert config.providers["plain"].discover is None


def test_the_latest_tag_may_be_left_out_and_no_other() -> None:
    assert public_names("llama2:latest") == ("llama2:latest", "llama2")
    assert public_names("llama2:7b") == ("llama2:7b",)
    assert public_names("gpt-4o") == ("gpt-4o",)
    assert public_names(":latest") == (":latest",)


def test_an_openai_listing_becomes_deployments_except_what_the_config_serves() -> None:
    oai = listing("oai")
    assert oai.url == "http://up.example/v1/models"
    assert oai.headers({"OAI_KEY": "sk-1"}) == {"Authorization": "Bearer sk-1"}
    listed = ["gpt-4o-mini", "gpt-3.5-turbo", "text-embedding-ada-002", "gpt-4o-mini"]
    models = oai.models_of(orjson.dumps(openai_listing(listed)))
    # gpt-4o-mini is a configured public name; gpt-3.5-turbo is the upstream model of a configured
    # deployment under another name: served under its own name too, at that deployment's price
    assert [(d.id, d.model, d.upstream_model, d.price.prompt_per_1k) for d, _ in models.deployments] == [
        ("oai/gpt-3.5-turbo", "gpt-3.5-turbo", "gpt-3.5-turbo", 0.5),
        ("oai/text-embedding-ada-002", "text-embedding-ada-002", "text-embedding-ada-002", 0.0),
    ]
    assert models.deployments[0][0].price.completion_per_1k == 1.5
    assert models.deployments[0][1].adapter == "openai"
    # No price in the config, none in the price list under "oai": unknown (null cost), never free.
    assert models.deployments[1][0].price.unknown


def test_a_discovered_model_the_price_list_knows_takes_its_price() -> None:
    config = parse_config(
        """
providers:
  oai: {adapter: openai, base_url: "http://up.example/v1/", price_list: openai, discover: true}
"""
    )
    oai = DiscoveryListing("oai", config.providers["oai"], config)
    models = oai.models_of(orjson.dumps(openai_listing(["gpt-4o-mini", "no-such-model-anywhere"])))
    prices = {d.model: d.price for d, _ in models.deployments}
    listed = prices["gpt-4o-mini"]
    assert (listed.prompt_per_1k, listed.completion_per_1k, listed.unknown) == (0.00015, 0.0006, False)
    assert listed.cached_prompt_per_1k == 0.000075
    assert prices["no-such-model-anywhere"].unknown


def test_an_ollama_listing_serves_the_bare_name_of_the_default_tag() -> None:
    local = listing("local")
    assert (local.url, local.headers({})) == ("http://ollama.example:11434/api/tags", {})
    models = local.models_of(orjson.dumps(ollama_listing(["llama2:latest", "llama2", "codellama:13b"])))
    assert [(d.id, d.model, d.upstream_model, d.priority) for d, _ in models.deployments] == [
        ("local/llama2:latest", "llama2:latest", "llama2:latest", 3),
        ("local/llama2", "llama2", "llama2:latest", 3),  # the first to claim the bare name keeps it
        ("local/codellama:13b", "codellama:13b", "codellama:13b", 3),
    ]


def test_discovered_ids_never_shadow_the_configs() -> None:
    config = parse_config(CONFIG)
    discovery = config.providers["oai"].discover
    assert discovery is not None
    models = discovered_models("oai", config.providers["oai"], discovery, ["x"], reserved_ids={"oai/x"})
    assert models.deployments == ()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"nope", "the model listing is not JSON"),
        (b'{"models": []}', 'not an object with a "data" list'),
        (b"[]", 'not an object with a "data" list'),
    ],
)
def test_a_listing_that_is_not_one_fails_as_a_whole(raw: bytes, error: str) -> None:
    with pytest.raises(CatalogFormatError, match=error):
        listing("oai").models_of(raw)


def test_entries_without_a_name_are_left_out() -> None:
    models = listing("oai").models_of(b'{"data": [{"id": ""}, {"object": "model"}, "x", {"id": "ok"}]}')
    assert [d.model for d, _ in models.deployments] == ["ok"]


def test_a_listing_needs_its_key_and_an_adapter_that_can_list() -> None:
    with pytest.raises(CatalogFetchError, match="OAI_KEY is not set"):
        listing("oai").headers({})
    with pytest.raises(CatalogFetchError, match="'tgi' has no model listing"):
        listing("tgi").headers({})


@pytest.mark.parametrize(
    ("handle", "adapter"),
    [
        ("/openai/v1/chat/completions", "openai"),
        ("/fireworks/chat/completions", "openai"),
        ("/gigachat/api/v1/chat/completions", "openai"),
        ("/x/v1/completions", "openai"),
        ("/anthropic/v1/messages", "anthropic"),
        ("/google/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
        ("/ollama/api/chat", "ollama"),
        ("/cohere/v2/chat/", "cohere"),
        ("/serving/odd/v1", None),
        ("/v1/messages/count_tokens", None),
    ],
)
def test_a_handles_wire_format_names_its_adapter(handle: str, adapter: str | None) -> None:
    assert adapter_of_handle(handle) == adapter


def test_a_catalogue_with_inference_takes_mapped_families_first_then_the_handle() -> None:
    config = parse_config(
        "providers: {c: {catalog: {url: 'https://models.example/list', infer_adapters: true, families: {giga: fake}}}}"
    )
    provider = config.providers["c"]
    assert provider.catalog is not None
    models = catalog_models(
        "c",
        provider,
        provider.catalog,
        [
            entry("gpt-4o", "gpt-4", "/openai/v1/chat/completions"),
            entry("claude", "claude-3", "/anthropic/v1/messages"),
            entry("GigaChat-2-Max", "giga", "/gigachat/api/v1/chat/completions"),
            entry("odd", "odd", "/serving/odd"),
        ],
    )
    assert [(d.model, p.adapter) for d, p in models.deployments] == [
        ("gpt-4o", "openai"),
        ("claude", "anthropic"),
        ("GigaChat-2-Max", "fake"),
    ]
    assert models.skipped == ("models.3 (odd): no known API ends its handle '/serving/odd'",)
