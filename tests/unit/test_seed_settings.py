"""The earlier tools' environment variables (common.seed_settings) read at config load and by every
service: aliases of our key names, ROUTER_SERVICES as providers with wildcard deployments, and
MODEL_LIST_URL as a catalogue provider whose adapters come from the handles."""

from __future__ import annotations

import logging

import orjson
import pytest

from common import seed_settings
from common.config import WILDCARD_MODEL, ConfigError, load_config, parse_config

SERVICES = [
    {
        "name": "primary-cerebras",
        "backend_type": "cerebras",
        "base_url": "https://api.cerebras.ai/v1",
        "api_key": "csk-secret-1",
        "priority": 0,
        "rate_limit_requests": 100,
        "rate_limit_window": 60,
    },
    {
        "name": "fallback-openai",
        "backend_type": "openai",
        "api_key": "sk-secret-2",
        "priority": 1,
        "rate_limit_requests": 50,
        "rate_limit_window": 30,
    },
    {"name": "local ollama", "backend_type": "ollama", "priority": 2},
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ROUTER_SERVICES",
        "MODEL_LIST_URL",
        "MODEL_LIST_AUTH_TOKEN",
        "HF_TOKEN",
        "HUGGINGFACE_API_TOKEN",
        "DEEPINFRA_API_KEY",
        "DEEPINFRA_TOKEN",
        "OLLAMA_BASE_URL",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_seed_key_names_are_read_as_ours_and_ours_win() -> None:
    env = seed_settings.environment({"HUGGINGFACE_API_TOKEN": "hf-1", "DEEPINFRA_TOKEN": "di-1"})
    assert (env["HF_TOKEN"], env["DEEPINFRA_API_KEY"]) == ("hf-1", "di-1")
    both = seed_settings.environment({"HUGGINGFACE_API_TOKEN": "hf-1", "HF_TOKEN": "hf-ours"})
    assert both["HF_TOKEN"] == "hf-ours"
    assert "HF_TOKEN" not in seed_settings.environment({})


def test_the_shipped_config_enables_huggingface_and_deepinfra_by_the_seeds_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert "huggingface" not in load_config().providers
    monkeypatch.setenv("HUGGINGFACE_API_TOKEN", "hf-seed-000")
    monkeypatch.setenv("DEEPINFRA_TOKEN", "di-seed-001")
    config = load_config()
    assert config.providers["huggingface"].api_key_env == "HF_TOKEN"
    assert config.providers["deepinfra"].api_key_env == "DEEPINFRA_API_KEY"


def test_an_ollama_url_of_its_openai_api_is_taken_at_the_servers_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://localhost:11434/v1")  # seed 001's form
    assert load_config().providers["ollama"].base_url == "http://localhost:11434"
    # ...for the native adapter; a config using ${OLLAMA_BASE_URL} (the openai adapter on /v1) gets it as given
    config = parse_config("providers: {o: {adapter: openai, base_url: '${OLLAMA_BASE_URL}'}}")
    assert config.providers["o"].base_url == "http://localhost:11434/v1"
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://localhost:11434")  # seed 000's form
    assert load_config().providers["ollama"].base_url == "http://localhost:11434"


def test_router_services_become_discovering_providers_with_wildcard_deployments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTER_SERVICES", orjson.dumps(SERVICES).decode())
    config = load_config()
    cerebras, openai, ollama = (config.providers[str(s["name"])] for s in SERVICES)
    assert (cerebras.adapter, cerebras.base_url, cerebras.discover is not None) == (
        "openai",
        "https://api.cerebras.ai/v1",
        True,
    )
    assert openai.base_url == "https://api.openai.com/v1"  # the backend type's URL when none is given
    assert ollama.base_url == "http://localhost:11434/v1" and ollama.api_key_env == ""
    # The key is named by a variable, never written in the config.
    assert cerebras.api_key_env == "ROUTER_SERVICE_PRIMARY_CEREBRAS_API_KEY"
    assert "csk-secret-1" not in config.model_dump_json()
    wild = [d for d in config.deployments if d.model == WILDCARD_MODEL]
    assert [(d.id, d.provider, d.priority, d.rpm) for d in wild] == [
        ("primary-cerebras/*", "primary-cerebras", 0, 100),
        ("fallback-openai/*", "fallback-openai", 1, 100),  # 50 per 30 s is 100 a minute
        ("local ollama/*", "local ollama", 2, None),
    ]
    assert "demo" in config.models()  # the config's own models stay


def test_every_service_derives_the_inline_keys_from_router_services() -> None:
    env = seed_settings.environment({"ROUTER_SERVICES": orjson.dumps(SERVICES).decode()})
    assert env["ROUTER_SERVICE_PRIMARY_CEREBRAS_API_KEY"] == "csk-secret-1"
    assert env["ROUTER_SERVICE_FALLBACK_OPENAI_API_KEY"] == "sk-secret-2"
    assert "ROUTER_SERVICE_LOCAL_OLLAMA_API_KEY" not in env


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("[{", "ROUTER_SERVICES: not valid JSON"),
        ('{"name": "x"}', "must be a JSON list"),
        ('[{"backend_type": "openai", "api_key": "sk-leak-me"}]', "ROUTER_SERVICES.0: name: Field required"),
        ('[{"name": "x", "backend_type": "bard", "api_key": "sk-leak-me"}]', "ROUTER_SERVICES.0.backend_type"),
        ('[{"name": "x", "backend_type": "custom"}]', "ROUTER_SERVICES.0.base_url: required"),
        ('[{"name": "x", "rate_limit_requests": 0, "api_key": "sk-leak-me"}]', "rate_limit_requests"),
        (
            '[{"name": "a-b", "base_url": "http://h/v1"}, {"name": "a_b", "base_url": "http://h/v1"}]',
            "ROUTER_SERVICES.1.name",
        ),
        ('[{"name": "openai", "base_url": "http://h/v1"}]', "already a provider of the config"),
    ],
)
def test_a_bad_router_services_stops_the_config_naming_the_field_not_the_key(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("ROUTER_SERVICES", value)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert says in str(err.value)
    assert "sk-leak-me" not in str(err.value)


def test_model_list_url_becomes_a_catalogue_that_infers_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_LIST_URL", "https://api.example.com/models")
    catalog = load_config().providers["model-list"].catalog
    assert catalog is not None
    assert (catalog.url, catalog.token_env, catalog.infer_adapters, catalog.families) == (
        "https://api.example.com/models",
        "",  # seed 002: no token, no Authorization header
        True,
        {},
    )
    monkeypatch.setenv("MODEL_LIST_AUTH_TOKEN", "oauth-1")
    catalog = load_config().providers["model-list"].catalog
    assert catalog is not None and catalog.token_env == "MODEL_LIST_AUTH_TOKEN"


def test_without_seed_variables_the_config_is_untouched() -> None:
    raw = {"providers": {"fake": {"adapter": "fake"}}, "deployments": []}
    assert seed_settings.apply(raw, {}) is raw


def test_a_wildcard_needs_no_catalogue_families_but_a_catalogue_without_inference_does() -> None:
    with pytest.raises(ConfigError, match="families"):
        parse_config("providers: {c: {catalog: {url: 'http://x.example/l'}}}")
    config = parse_config("providers: {c: {catalog: {url: 'http://x.example/l', infer_adapters: true}}}")
    assert config.providers["c"].catalog is not None


def test_the_key_is_not_in_the_services_repr(caplog: pytest.LogCaptureFixture) -> None:
    [service] = seed_settings.router_services({"ROUTER_SERVICES": orjson.dumps(SERVICES[:1]).decode()})
    logging.getLogger("test").warning("%r", service)
    assert "csk-secret-1" not in caplog.text
