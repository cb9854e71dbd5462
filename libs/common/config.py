"""The YAML config: providers, deployments (the routable targets), client keys, health policy.

``${VAR}`` and ``${VAR:-default}`` in any string are replaced from the environment, and a provider
with ``enabled_if_env: VAR`` exists only when ``VAR`` is set, so the shipped file serves the offline
demo models and grows real providers as their keys appear. A bad file stops the service with a
message naming the field (``deployments.1.rpm: ...``).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "modelrouter.yaml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A Target option every HTTP adapter honours: the scheme of its ``Authorization: <scheme> <key>``
# header (``Bearer`` when absent). Remote catalogues set it to ``OAuth``; a provider may set it too.
AUTH_SCHEME_OPTION = "auth_scheme"
# Target options naming the model's endpoint as a full path on the base URL's host, instead of the
# adapter's own paths under it: ``endpoint`` for the endpoint as a whole (a remote catalogue's
# ``handle``), ``endpoint:<operation>`` (``endpoint_option``) where one operation lives elsewhere.
# How the adapter tells which operations ``endpoint`` serves: ``workers.providers._endpoints``.
ENDPOINT_OPTION = "endpoint"


def endpoint_option(operation: str) -> str:
    """The Target option naming where ``operation`` (``common.providers.base.Operation``) lives."""
    return f"{ENDPOINT_OPTION}:{operation}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per 1,000 tokens."""

    prompt_per_1k: float = Field(default=0.0, ge=0)
    completion_per_1k: float = Field(default=0.0, ge=0)


class RemoteCatalogConfig(_Strict):
    """A provider whose models are listed at ``url`` rather than in ``deployments``.

    The document is ``{"models": [{"model_version", "model_family", "handle", "prompt_price_1k",
    "completion_price_1k", "paths"?}]}``; each entry becomes a deployment (see ``router.remote_catalog``). The
    router fetches it at start and every ``refresh_s``; a failed fetch keeps the last good list.
    """

    url: str = Field(description="where the catalogue JSON is; its scheme and host also serve the models")
    refresh_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="for one fetch of the catalogue")
    # The credential for the catalogue and for its models' requests, sent as `Authorization: OAuth <token>`.
    token_env: str = ""
    # model_family -> adapter name in the workers' registry; entries of other families are skipped.
    families: dict[str, Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    # Priority of every catalogue deployment among deployments of the same public model name.
    priority: int = 0

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an absolute http(s) URL, not {url!r}")
        return url


class ProviderConfig(_Strict):
    # Required unless the provider has a catalog, whose families name the adapters instead.
    adapter: str = Field(default="", description="adapter name in the workers' registry, e.g. openai, fake")
    base_url: str = ""
    api_key_env: str = ""
    enabled_if_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    options: dict[str, str] = Field(default_factory=dict)
    catalog: RemoteCatalogConfig | None = None


class DeploymentConfig(_Strict):
    id: str = Field(min_length=1)
    model: str = Field(min_length=1, description="the public model name clients ask for")
    provider: str = Field(min_length=1)
    upstream_model: str = ""
    priority: int = 0
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    base_url: str | None = None
    price: Price = Field(default_factory=Price)
    options: dict[str, str] = Field(default_factory=dict)


class KeyConfig(_Strict):
    key: str = Field(min_length=8)
    id: str | None = None


class HealthConfig(_Strict):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class ModelRouterConfig(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    health: HealthConfig = Field(default_factory=HealthConfig)
    # Keep each request's prompt and answer text with its usage row (a key's own store_bodies
    # overrides this), each cut to store_bodies_max_bytes (at most 256 KiB: the texts travel in the
    # usage events).
    store_bodies: bool = False
    store_bodies_max_bytes: int = Field(default=32 * 1024, ge=0, le=256 * 1024)

    @model_validator(mode="after")
    def _check_references(self) -> ModelRouterConfig:
        for name, provider in self.providers.items():
            if not provider.adapter and provider.catalog is None:
                raise ValueError(f"providers.{name}.adapter: required unless the provider has a catalog")
        seen: set[str] = set()
        for i, dep in enumerate(self.deployments):
            if dep.provider not in self.providers:
                raise ValueError(f"deployments.{i}.provider: unknown provider {dep.provider!r}")
            if not self.providers[dep.provider].adapter:
                raise ValueError(
                    f"deployments.{i}.provider: provider {dep.provider!r} has no adapter of its own "
                    "(its models come from its catalog)"
                )
            if dep.id in seen:
                raise ValueError(f"deployments.{i}.id: duplicate deployment id {dep.id!r}")
            seen.add(dep.id)
        return self

    def deployments_for(self, model: str) -> list[DeploymentConfig]:
        return sorted((d for d in self.deployments if d.model == model), key=lambda d: d.priority)

    def models(self) -> dict[str, str]:
        """Public model name -> provider name of its first deployment (OpenAI's ``owned_by``)."""
        out: dict[str, str] = {}
        for dep in sorted(self.deployments, key=lambda d: d.priority):
            out.setdefault(dep.model, dep.provider)
        return out


class ConfigError(Exception):
    pass


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _drop_disabled(raw: dict[str, Any]) -> dict[str, Any]:
    providers = raw.get("providers") or {}
    if not isinstance(providers, dict):
        return raw
    disabled = {
        name
        for name, p in providers.items()
        if isinstance(p, dict) and p.get("enabled_if_env") and not os.environ.get(p["enabled_if_env"])
    }
    if not disabled:
        return raw
    raw = dict(raw)
    raw["providers"] = {k: v for k, v in providers.items() if k not in disabled}
    deployments = raw.get("deployments") or []
    if isinstance(deployments, list):
        raw["deployments"] = [d for d in deployments if not (isinstance(d, dict) and d.get("provider") in disabled)]
    return raw


def parse_config(text: str, source: str = "<string>") -> ModelRouterConfig:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return ModelRouterConfig.model_validate(_expand(_drop_disabled(raw)))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}" if loc else f"  {err['msg']}")
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def load_config(path: str | None = None) -> ModelRouterConfig:
    """Read the config at ``path`` (or MODELROUTER_CONFIG, or the shipped default)."""
    file = Path(path or os.environ.get("MODELROUTER_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    return parse_config(text, str(file))


def load_config_or_exit(path: str | None = None) -> ModelRouterConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None


def key_id(key: str) -> str:
    """A stable, non-secret id for a client key (what logs and usage rows carry)."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]
