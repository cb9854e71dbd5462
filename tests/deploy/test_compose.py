"""docker-compose.yml: valid against the Compose specification's JSON schema (as vendored by
check-jsonschema), builds that point at real Dockerfile targets, start order through health checks,
and an offline default (the fake provider) with real keys only from .env."""

from __future__ import annotations

import json
import os
import re
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from common.config import parse_config
from tests.deploy import env_names
from tests.deploy.dockerfile_model import REPO, SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile

pytestmark = pytest.mark.deploy

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}; `$$` is a literal dollar.
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\})")


@cache
def _raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, with ``env`` standing for the shell and .env."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _services(env: dict[str, str] | None = None) -> dict[str, Any]:
    services: dict[str, Any] = _interpolate(_raw(), env or {})["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_validates_against_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(_raw()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_every_build_points_at_an_existing_dockerfile_target() -> None:
    services = _services()
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(SERVICES) | {"migrate"} <= set(built)
    for name, build in built.items():
        context = REPO / build["context"]
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        model = load_dockerfile(dockerfile)
        assert build["target"] in model.stages, f"{name}: no stage {build['target']} in {dockerfile}"
        # The compose image name is the one the Kubernetes manifests and the Tiltfile use.
        assert services[name]["image"] == f"modelrouter/{build['target']}"


def _has_healthcheck(service: dict[str, Any]) -> bool:
    if "healthcheck" in service:
        return not service["healthcheck"].get("disable", False)
    if "build" in service:
        return load_dockerfile().healthcheck(service["build"]["target"]) is not None
    return False


def test_start_order_is_enforced_by_health_and_completion() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert _has_healthcheck(services[dependency]), f"{name} waits for {dependency}'s health, it has none"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart", "no") == "no", f"{dependency} is a one-shot"
    assert services["accounting"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service_name, needs in {
        "router": {"redis"},
        "workers": {"nats"},
        "accounting": {"nats", "postgres"},
        "gateway": {"router", "nats"},
    }.items():
        depends = services[service_name]["depends_on"]
        for dependency in needs:
            assert depends[dependency]["condition"] == "service_healthy", f"{service_name} -> {dependency}"


def test_backend_addresses_name_compose_services() -> None:
    services = _services()
    for name in SERVICES:
        env = _environment(services[name])
        for variable in ("REDIS_URL", "NATS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            if variable in env:
                host = urlsplit(env[variable]).hostname
                assert host in services, f"{name}: {variable} points at {host}, not a compose service"
        if "ROUTER_ADDR" in env:
            assert env["ROUTER_ADDR"].rpartition(":")[0] in services
    assert _environment(services["router"])["ROUTER_LISTEN"].startswith("0.0.0.0:")
    assert _environment(services["gateway"])["GATEWAY_HOST"] == "0.0.0.0"
    for name in ("workers", "accounting"):
        assert _environment(services[name])["HEALTH_HOST"] == "0.0.0.0"


def test_migration_uses_the_database_accounting_uses() -> None:
    services = _services({"POSTGRES_PASSWORD": "from-dotenv"})
    url = _environment(services["accounting"])["DATABASE_URL"]
    assert _environment(services["migrate"])["DATABASE_URL"] == url
    postgres = _environment(services["postgres"])
    parts = urlsplit(url)
    assert (parts.username, parts.password, parts.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_published_ports_and_persistent_jetstream() -> None:
    services = _services()
    gateway_ports = [str(p) for p in services["gateway"]["ports"]]
    assert f"8000:{_environment(services['gateway'])['GATEWAY_PORT']}" in gateway_ports
    assert "16686:16686" in [str(p) for p in services["jaeger"]["ports"]]
    assert "4317" in [str(p) for p in services["jaeger"].get("expose", [])]
    assert "--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:4317" in services["jaeger"]["command"]
    command = services["nats"]["command"]
    assert "--jetstream" in command
    store = command[command.index("--store_dir") + 1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in services["nats"]["volumes"]}
    assert volumes.get(store) in _raw()["volumes"], "JetStream's store must be a named volume"


def test_settings_names_are_ones_the_services_read() -> None:
    services = _services()
    for name in SERVICES:
        unknown = sorted(v for v in _environment(services[name]) if not env_names.is_known(name, v))
        assert not unknown, f"{name} is given variables it never reads: {unknown}"


def test_without_dotenv_the_stack_serves_the_fake_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env: every provider key is empty, so the config the gateway and router load (under the
    environment compose gives them) still has routable models, all on the offline fake provider."""
    for name in ("gateway", "router"):
        env = _environment(_services()[name])
        for key in list(os.environ):
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = parse_config((REPO / "config" / "modelrouter.yaml").read_text())
        assert config.deployments, f"{name}: no deployment without .env"
        assert {config.providers[d.provider].adapter for d in config.deployments} == {"fake"}


def test_a_key_in_dotenv_reaches_every_service_that_needs_it() -> None:
    services = _services({"OPENAI_API_KEY": "sk-from-dotenv"})
    for name in ("gateway", "router", "workers"):
        assert _environment(services[name]).get("OPENAI_API_KEY") == "sk-from-dotenv", name
    assert "OPENAI_API_KEY" not in _environment(services["accounting"])


def test_env_example_documents_every_variable_compose_reads() -> None:
    read = set(_VARIABLE.findall(COMPOSE.read_text()))
    used = {name for name, _ in read if name}
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert used == documented, f"only in compose: {used - documented}; only in .env.example: {documented - used}"
    # Real keys never get committed: every value in the example is empty or commented out.
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), f".env.example sets a value: {line}"


def test_app_containers_are_hardened_and_drain_on_stop() -> None:
    services = _services()
    for name in SERVICES:
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        grace = int(str(service["stop_grace_period"]).removesuffix("s"))
        drain = float(_environment(service)["DRAIN_TIMEOUT_S"])
        assert grace > drain, f"{name}: stop_grace_period {grace}s must exceed DRAIN_TIMEOUT_S {drain}s"
