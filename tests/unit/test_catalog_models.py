"""A catalogue document turned into deployments (router.remote_catalog), and those deployments merged
with the config's in the routing table (router.selection)."""

from __future__ import annotations

from typing import Any

import pytest

from common.config import AUTH_SCHEME_OPTION, ENDPOINT_OPTION, ModelRouterConfig, endpoint_option, parse_config
from common.errors import NotFoundError
from router.remote_catalog import CatalogFormatError, catalog_models, host_path, origin_of, parse_document
from router.selection import Catalog, LiveCatalog, build_target
from tests.integration.catalog_server import entry

CONFIG = """
providers:
  fake: {adapter: fake}
  cloud:
    timeout_s: 42
    options: {region: eu}
    catalog:
      url: https://user:pw@models.example:8443/catalogue/v2/models.json?region=eu#top
      token_env: CLOUD_TOKEN
      families: {gpt: openai, llama: tgi}
      priority: 5
deployments:
  - {id: static-a, model: shared, provider: fake, priority: 1}
  - {id: static-b, model: only-static, provider: fake}
"""


@pytest.fixture
def config() -> ModelRouterConfig:
    return parse_config(CONFIG)


def models_of(config: ModelRouterConfig, entries: list[Any], reserved: tuple[str, ...] = ()) -> Any:
    provider = config.providers["cloud"]
    assert provider.catalog is not None
    return catalog_models("cloud", provider, provider.catalog, entries, reserved)


def test_an_entry_becomes_a_deployment_on_the_catalogue_host_with_its_family_adapter(
    config: ModelRouterConfig,
) -> None:
    handle = "/serving/gpt-4o/v1/chat/completions"
    result = models_of(config, [entry("gpt-4o-2024", "gpt", handle, prompt=0.3, completion=1.2)])
    assert result.skipped == ()
    [(deployment, provider)] = result.deployments
    target = build_target(deployment, provider)
    assert target.deployment_id == "cloud/gpt-4o-2024"
    assert target.provider == "openai"
    assert target.upstream_model == "gpt-4o-2024"
    # scheme + host (+ port) of the catalogue URL; its credentials, path, query and fragment dropped.
    # The handle is the endpoint's full path on it: an option, not part of the base URL, which the
    # adapter's own paths would be appended to.
    assert target.base_url == "https://models.example:8443"
    assert target.api_key_env == "CLOUD_TOKEN"
    assert dict(target.options) == {"region": "eu", AUTH_SCHEME_OPTION: "OAuth", ENDPOINT_OPTION: handle}
    assert target.timeout_s == 42
    assert (target.price.prompt_per_1k, target.price.completion_per_1k) == (0.3, 1.2)
    # The catalogue's prices are the deployment's own: known, never looked up in the price list.
    assert not target.price.unknown and "price" in deployment.model_fields_set
    assert deployment.model == "gpt-4o-2024"
    assert deployment.priority == 5


def test_the_family_picks_the_adapter_per_entry(config: ModelRouterConfig) -> None:
    result = models_of(config, [entry("a", "gpt", "/a"), entry("b", "llama", "b/v1")])
    assert [(d.id, p.adapter, d.base_url, d.options) for d, p in result.deployments] == [
        ("cloud/a", "openai", "https://models.example:8443", {ENDPOINT_OPTION: "/a"}),
        ("cloud/b", "tgi", "https://models.example:8443", {ENDPOINT_OPTION: "/b/v1"}),
    ]


def test_an_entrys_paths_name_its_other_operations_endpoints(config: ModelRouterConfig) -> None:
    paths = {"embeddings": "/serving/e/v1/embeddings", "images.generations": "serving/i"}
    [(deployment, _)] = models_of(
        config, [entry("m", "gpt", "/serving/c/v1/chat/completions", paths=paths)]
    ).deployments
    assert deployment.options == {
        ENDPOINT_OPTION: "/serving/c/v1/chat/completions",
        endpoint_option("embeddings"): "/serving/e/v1/embeddings",
        endpoint_option("images.generations"): "/serving/i",
    }


def test_entries_that_cannot_be_served_are_skipped_with_the_reason(config: ModelRouterConfig) -> None:
    entries = [
        entry("good", "gpt", "/good"),
        entry("mystery", "unknown-family", "/m"),
        entry("elsewhere", "gpt", "https://evil.example/steal"),
        entry("protocol-relative", "gpt", "//evil.example/steal"),
        entry("good", "gpt", "/good-again"),
        entry("cheap", "gpt", "/c", prompt=-1),
        {"model_version": "no-handle", "model_family": "gpt", "prompt_price_1k": 0, "completion_price_1k": 0},
        "not an object",
        entry("reserved", "gpt", "/r"),
        entry("odd-paths", "gpt", "/o", paths={"speech": "/o/speech"}),
        entry("far-paths", "gpt", "/f", paths={"embeddings": "https://evil.example/e"}),
    ]
    result = models_of(config, entries, reserved=("cloud/reserved",))
    assert [d.id for d, _ in result.deployments] == ["cloud/good"]
    skipped = "\n".join(result.skipped)
    assert len(result.skipped) == 10
    assert "models.1 (mystery): unknown model_family 'unknown-family'" in skipped
    assert "models.2: handle 'https://evil.example/steal' is not a path on the catalogue's host" in skipped
    assert "models.3: handle '//evil.example/steal'" in skipped
    assert "models.4 (good): duplicate deployment id 'cloud/good'" in skipped
    assert "models.5: prompt_price_1k:" in skipped
    assert "models.6: handle: Field required" in skipped
    assert "models.7:" in skipped
    assert "models.8 (reserved): duplicate deployment id 'cloud/reserved'" in skipped
    assert "models.9: paths: unknown operation 'speech'" in skipped
    assert "models.10: paths.embeddings 'https://evil.example/e' is not a path on the catalogue's host" in skipped


def test_unknown_entry_fields_are_ignored(config: ModelRouterConfig) -> None:
    result = models_of(config, [entry("a", "gpt", "/a", context_window=128000, deprecated=False)])
    assert [d.id for d, _ in result.deployments] == ["cloud/a"]


def test_without_a_token_no_auth_scheme_is_set() -> None:
    config = parse_config("providers: {c: {catalog: {url: 'http://h.example/l', families: {f: openai}}}}")
    provider = config.providers["c"]
    assert provider.catalog is not None
    [(deployment, resolved)] = catalog_models("c", provider, provider.catalog, [entry("m", "f", "/m")]).deployments
    target = build_target(deployment, resolved)
    assert target.api_key_env == ""
    assert AUTH_SCHEME_OPTION not in target.options


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://models.example/a/b.json?x=1", "https://models.example"),
        ("http://user:secret@10.0.0.5:8080/list", "http://10.0.0.5:8080"),
        ("http://[::1]:9000/list", "http://[::1]:9000"),
    ],
)
def test_origin_is_scheme_and_host(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_a_handle_is_an_absolute_path() -> None:
    assert host_path("/m/v1/chat/completions") == "/m/v1/chat/completions"
    assert host_path("m/v1/messages") == "/m/v1/messages"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"<html>", "not JSON"),
        (b"[1, 2]", '"models" list'),
        (b'{"data": []}', '"models" list'),
        (b'{"models": {"a": 1}}', '"models" list'),
    ],
)
def test_a_document_that_is_not_a_catalogue_is_refused(raw: bytes, says: str) -> None:
    with pytest.raises(CatalogFormatError, match=says):
        parse_document(raw)


def test_a_document_gives_its_entries() -> None:
    assert parse_document(b'{"models": [{"handle": "/x"}], "etag": "1"}') == [{"handle": "/x"}]


def test_catalogue_models_join_the_configs_in_route_and_list(config: ModelRouterConfig) -> None:
    result = models_of(config, [entry("shared", "gpt", "/shared"), entry("remote-only", "llama", "/r")])
    catalog = Catalog.from_config(config, result.deployments)
    # Same public name as a config deployment: one more candidate, by priority (catalog priority 5 > 1).
    assert [c.deployment_id for c in catalog.candidates("shared")] == ["static-a", "cloud/shared"]
    assert [c.deployment_id for c in catalog.candidates("remote-only")] == ["cloud/remote-only"]
    assert catalog.knows_deployment("cloud/remote-only")
    owners = {m.id: m.owned_by for m in catalog.models.models}
    assert owners == {"shared": "fake", "only-static": "fake", "remote-only": "cloud"}


def test_live_catalog_swaps_in_each_new_list_and_keeps_the_config(config: ModelRouterConfig) -> None:
    live = LiveCatalog(config)
    with pytest.raises(NotFoundError):
        live.candidates("remote-only")
    live.replace("cloud", models_of(config, [entry("remote-only", "gpt", "/r")]).deployments)
    assert [c.deployment_id for c in live.candidates("remote-only")] == ["cloud/remote-only"]
    before = live.current
    live.replace("cloud", models_of(config, [entry("newer", "gpt", "/n")]).deployments)
    assert live.current is not before  # a new table, never the old one changed under a Route
    assert [c.deployment_id for c in before.candidates("remote-only")] == ["cloud/remote-only"]
    with pytest.raises(NotFoundError):
        live.candidates("remote-only")
    assert not live.knows_deployment("cloud/remote-only")
    assert [m.id for m in live.models.models] == ["only-static", "shared", "newer"]  # by priority
    assert [c.deployment_id for c in live.candidates("only-static")] == ["static-b"]
