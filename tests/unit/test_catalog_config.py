"""The ``catalog`` block of a provider: what a valid one gives, and field-named errors for bad ones."""

from __future__ import annotations

import pytest

from common.config import ConfigError, parse_config

CATALOG_PROVIDER = """
providers:
  fake: {adapter: fake}
  cloud:
    timeout_s: 20
    catalog:
      url: https://models.example:8443/catalogue/models.json
      token_env: CLOUD_TOKEN
      families: {gpt: openai, llama: tgi}
deployments:
  - {id: a, model: m, provider: fake}
"""


def test_a_catalog_provider_needs_no_adapter_and_gets_defaults() -> None:
    config = parse_config(CATALOG_PROVIDER)
    provider = config.providers["cloud"]
    assert provider.adapter == ""
    assert provider.catalog is not None
    assert provider.catalog.url == "https://models.example:8443/catalogue/models.json"
    assert provider.catalog.token_env == "CLOUD_TOKEN"
    assert provider.catalog.families == {"gpt": "openai", "llama": "tgi"}
    assert provider.catalog.refresh_s == 300
    assert provider.catalog.timeout_s == 10
    assert provider.catalog.priority == 0


def test_a_catalog_provider_with_an_adapter_may_also_have_static_deployments() -> None:
    config = parse_config(
        "providers: {cloud: {adapter: openai, base_url: 'https://x.example/v1',"
        " catalog: {url: 'https://x.example/c.json', families: {gpt: openai}}}}\n"
        "deployments: [{id: s, model: static, provider: cloud}]"
    )
    assert [d.id for d in config.deployments] == ["s"]


def test_catalog_url_expands_environment_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CATALOG_HOST", "catalogue.internal:9000")
    config = parse_config("providers: {c: {catalog: {url: 'http://${TEST_CATALOG_HOST}/list', families: {f: openai}}}}")
    assert config.providers["c"].catalog is not None
    assert config.providers["c"].catalog.url == "http://catalogue.internal:9000/list"


@pytest.mark.parametrize(
    ("text", "names", "says"),
    [
        (
            "providers: {c: {catalog: {url: 'ftp://x.example/list', families: {f: openai}}}}",
            "providers.c.catalog.url",
            "absolute http(s) URL",
        ),
        (
            "providers: {c: {catalog: {url: '/relative/list.json', families: {f: openai}}}}",
            "providers.c.catalog.url",
            "absolute http(s) URL",
        ),
        ("providers: {c: {catalog: {url: 'http://x.example/l', families: {}}}}", "providers.c.catalog.families", ""),
        ("providers: {c: {catalog: {url: 'http://x.example/l'}}}", "providers.c.catalog.families", "required"),
        ("providers: {c: {catalog: {families: {f: openai}}}}", "providers.c.catalog.url", "required"),
        (
            "providers: {c: {catalog: {url: 'http://x.example/l', families: {f: ''}}}}",
            "providers.c.catalog.families.f",
            "",
        ),
        (
            "providers: {c: {catalog: {url: 'http://x.example/l', refresh_s: 0, families: {f: openai}}}}",
            "providers.c.catalog.refresh_s",
            "greater than 0",
        ),
        (
            "providers: {c: {catalog: {url: 'http://x.example/l', timeout_s: -1, families: {f: openai}}}}",
            "providers.c.catalog.timeout_s",
            "greater than 0",
        ),
        (
            "providers: {c: {catalog: {url: 'http://x.example/l', families: {f: openai}, colour: red}}}",
            "providers.c.catalog.colour",
            "not permitted",
        ),
        ("providers: {c: {base_url: 'http://x.example'}}", "providers.c.adapter", "required unless"),
        (
            "providers: {c: {catalog: {url: 'http://x.example/l', families: {f: openai}}}}\n"
            "deployments: [{id: a, model: m, provider: c}]",
            "deployments.0.provider",
            "no adapter of its own",
        ),
    ],
)
def test_a_bad_catalog_names_the_field(text: str, names: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "bad.yaml")
    assert names in str(err.value)
    assert says in str(err.value)
