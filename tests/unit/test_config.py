from __future__ import annotations

import pytest

from common.config import ConfigError, load_config, parse_config

VALID = """
providers:
  fake: {adapter: fake}
  openai: {adapter: openai, base_url: "${TEST_OPENAI_BASE:-https://api.example/v1}", api_key_env: K,
           enabled_if_env: TEST_OPENAI_KEY}
deployments:
  - {id: a, model: m, provider: fake, priority: 5}
  - {id: b, model: m, provider: fake, priority: 1}
  - {id: c, model: gpt, provider: openai}
"""


def test_shipped_default_config_loads_and_serves_demo_models_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    config = load_config()
    assert config.models() == {"demo": "fake", "demo-fast": "fake"}


def test_shipped_default_adds_openai_when_its_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = load_config()
    assert config.models()["gpt-4o-mini"] == "openai"
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"


def test_provider_without_its_env_var_is_dropped_with_its_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    config = parse_config(VALID)
    assert set(config.providers) == {"fake"}
    assert [d.id for d in config.deployments] == ["a", "b"]


def test_env_references_expand_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "x")
    assert parse_config(VALID).providers["openai"].base_url == "https://api.example/v1"
    monkeypatch.setenv("TEST_OPENAI_BASE", "http://10.0.0.1:9000/v1")
    assert parse_config(VALID).providers["openai"].base_url == "http://10.0.0.1:9000/v1"


def test_deployments_for_a_model_come_in_priority_order() -> None:
    assert [d.id for d in parse_config(VALID).deployments_for("m")] == ["b", "a"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "deployments: [{id: a, model: m, provider: nope}]\nproviders: {fake: {adapter: fake}}",
            "deployments.0.provider",
        ),
        (
            "providers: {fake: {adapter: fake}}\ndeployments: [{id: a, model: m, provider: fake, rpm: -1}]",
            "deployments.0.rpm",
        ),
        ("providers: {fake: {adapter: fake, timeout_s: zero}}", "providers.fake.timeout_s"),
        ("providers: {fake: {adapter: fake, colour: red}}", "providers.fake.colour"),
        ("health: {failure_threshold: 0}", "health.failure_threshold"),
        ("keys: [{key: short}]", "keys.0.key"),
    ],
)
def test_a_bad_config_names_the_field(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "bad.yaml")
    assert names in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_duplicate_deployment_ids_are_rejected() -> None:
    text = "providers: {fake: {adapter: fake}}\ndeployments: [{id: a, model: m, provider: fake}, {id: a, model: n, provider: fake}]"
    with pytest.raises(ConfigError, match="duplicate deployment id"):
        parse_config(text)


def test_not_yaml_and_not_a_mapping_are_reported() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("providers: [unclosed")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a list")


def test_missing_file_is_reported(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/modelrouter.yaml")


PROVIDER_KEYS = {
    "ANTHROPIC_API_KEY": ("anthropic", "claude-sonnet-4-5"),
    "GEMINI_API_KEY": ("gemini", "gemini-2.5-flash"),
    "COHERE_API_KEY": ("cohere", "command-a-03-2025"),
    "MISTRAL_API_KEY": ("mistral", "mistral-small-latest"),
    "HF_TOKEN": ("huggingface", "meta-llama/Llama-3.1-8B-Instruct"),
    "CEREBRAS_API_KEY": ("cerebras", "cerebras/llama3.1-8b"),
    "GROQ_API_KEY": ("groq", "groq/llama-3.1-8b-instant"),
    "OLLAMA_BASE_URL": ("ollama", "llama3.2"),
}


@pytest.mark.parametrize("variable", sorted(PROVIDER_KEYS))
def test_each_shipped_provider_switches_on_with_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    from workers.providers import REGISTRY

    for name in PROVIDER_KEYS:
        monkeypatch.delenv(name, raising=False)
    provider, model = PROVIDER_KEYS[variable]
    assert model not in load_config().models()
    monkeypatch.setenv(variable, "http://127.0.0.1:11434" if variable.endswith("_URL") else "secret")
    config = load_config()
    assert config.models()[model] == provider
    assert config.providers[provider].adapter in REGISTRY
