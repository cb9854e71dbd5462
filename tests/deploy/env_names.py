"""Which environment variable names a service reads, so a misspelt one in a manifest or in compose
fails a test (the settings classes ignore unknown variables, so the service would not notice)."""

from __future__ import annotations

import re

from pydantic_settings import BaseSettings

from common.settings import AccountingSettings, GatewaySettings, RouterSettings, WorkerSettings
from tests.deploy.dockerfile_model import REPO

SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "router": RouterSettings,
    "workers": WorkerSettings,
    "accounting": AccountingSettings,
}
# Services that read the YAML config, whose ${VAR} references are environment variables too.
READS_CONFIG = ("gateway", "router")
CONFIG_FILES = (
    REPO / "config" / "modelrouter.yaml",
    REPO / "deploy" / "k8s" / "overlays" / "prod" / "modelrouter.yaml",
)
_CONFIG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|(?:api_key_env|enabled_if_env):\s*([A-Za-z_][A-Za-z0-9_]*)")


def config_variables() -> set[str]:
    names: set[str] = set()
    for path in CONFIG_FILES:
        for match in _CONFIG_REF.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def provider_variables() -> set[str]:
    """Variables the workers' provider adapters are pointed at by the config (keys, base URLs)."""
    return {name for name in config_variables() if name.endswith(("_API_KEY", "_BASE_URL"))}


def known(service: str) -> set[str]:
    names = {field.upper() for field in SETTINGS[service].model_fields}
    names |= provider_variables()
    if service in READS_CONFIG:
        names |= config_variables()
    return names


def is_known(service: str, name: str) -> bool:
    # OTEL_* are read by the OpenTelemetry SDK itself (exporter endpoint, protocol, sampler...).
    return name.startswith("OTEL_") or name in known(service)
