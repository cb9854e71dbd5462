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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.price_list import PriceListError, context_window, load_price_list

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
# A deployment's ``model`` that serves any model name no other deployment serves (seed 001's
# backends, ``common.seed_settings``); the name asked for goes upstream (``router.wildcard``).
WILDCARD_MODEL = "*"


def endpoint_option(operation: str) -> str:
    """The Target option naming where ``operation`` (``common.providers.base.Operation``) lives."""
    return f"{ENDPOINT_OPTION}:{operation}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per 1,000 tokens. A deployment without one takes the price list's (``common.price_list``),
    or, when its model is not listed, an unknown price (``unknown``: costs recorded as NULL, not 0)."""

    prompt_per_1k: float = Field(default=0.0, ge=0)
    completion_per_1k: float = Field(default=0.0, ge=0)
    # Prompt tokens served from the provider's cache; None: billed at prompt_per_1k.
    cached_prompt_per_1k: float | None = Field(default=None, ge=0)
    unknown: bool = False


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
    # With it, an entry whose family ``families`` does not map takes the adapter its handle's wire
    # format names (``router.handle_formats``: ``.../chat/completions`` is OpenAI's, ``.../v1/messages``
    # Anthropic's, ``...:generateContent`` Gemini's); seed 002's catalogues name no families.
    infer_adapters: bool = False
    # model_family -> adapter name in the workers' registry; entries of other families are skipped
    # (unless ``infer_adapters``). Required unless ``infer_adapters``.
    families: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict, validate_default=True)
    # Priority of every catalogue deployment among deployments of the same public model name.
    priority: int = 0

    @field_validator("families")
    @classmethod
    def _families_or_inference(cls, families: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if not families and not info.data.get("infer_adapters"):
            raise ValueError("required: a model_family -> adapter mapping (or infer_adapters: true)")
        return families

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an absolute http(s) URL, not {url!r}")
        return url


class DiscoveryConfig(_Strict):
    """List what the provider's upstream serves (``GET /v1/models``, Ollama's ``/api/tags``: the format
    is the adapter's, ``router.listing_formats``) at start and every ``refresh_s``; each model listed
    becomes a deployment of the provider under the listed name (see ``router.discovery``)."""

    refresh_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="for one listing")
    # Priority of every discovered deployment among deployments of the same public model name.
    priority: int = 0


class ProviderConfig(_Strict):
    # Required unless the provider has a catalog, whose families name the adapters instead.
    adapter: str = Field(default="", description="adapter name in the workers' registry, e.g. openai, fake")
    base_url: str = ""
    api_key_env: str = ""
    enabled_if_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    options: dict[str, str] = Field(default_factory=dict)
    catalog: RemoteCatalogConfig | None = None
    # ``discover: true`` (the defaults) or ``discover: {refresh_s: 60}``.
    discover: DiscoveryConfig | None = None

    @field_validator("discover", mode="before")
    @classmethod
    def _discover_flag(cls, value: Any) -> Any:
        if value is True:
            return DiscoveryConfig()
        return None if value is False else value

    # Which provider of the price list prices this provider's models (by upstream model name);
    # empty: the provider's own name.
    price_list: str = ""


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
    weight: float = Field(default=1.0, gt=0, description="its share of its model's traffic under `weighted`")
    context_window: int | None = Field(default=None, gt=0, description="prompt + output tokens it accepts")


# How a public model's deployments share its traffic (router.strategies says how each works).
Strategy = Literal["priority", "weighted", "least-busy", "latency", "cost"]
PROMPT_CLASSES = ("code", "complex", "simple", "general")


class ModelSettings(_Strict):
    strategy: Strategy = "priority"


class AutoConfig(_Strict):
    """``model: auto``: the gateway's classifier names the prompt's class, the router picks among
    that class's candidate models' deployments by ``strategy``."""

    classes: dict[Literal["code", "complex", "simple", "general"], list[Annotated[str, Field(min_length=1)]]] = Field(
        min_length=1
    )
    strategy: Strategy = "cost"


class KeyConfig(_Strict):
    key: str = Field(min_length=8)
    id: str | None = None


class HealthConfig(_Strict):
    """Outlier detection as Envoy does it: ``failure_threshold`` consecutive failures eject a
    deployment for ``cooldown_s`` times the times it was ejected (at most ``max_ejection_s``)."""

    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0, description="base ejection time")
    max_ejection_s: float = Field(default=300.0, gt=0)
    # Of a model's deployments, the share that may be ejected at once; one always stays.
    max_ejection_share: float = Field(default=0.5, ge=0, le=1)
    # How long an upstream that says its quota or credit is gone (402, insufficient_quota) rests
    # when it sends no Retry-After.
    quota_cooldown_s: float = Field(default=300.0, gt=0)


class ModelRouterConfig(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    health: HealthConfig = Field(default_factory=HealthConfig)
    # Per public model: how its deployments share traffic (absent: priority).
    # (YAML ``models``; the attribute name ``models`` is the method listing them.)
    per_model: dict[str, ModelSettings] = Field(default_factory=dict, alias="models")
    # Per public model: other models to serve it when none of its deployments can.
    fallbacks: dict[str, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)
    auto: AutoConfig | None = None
    default_model: str = ""  # for a body without `model` (the gateway's DEFAULT_MODEL wins)

    @model_validator(mode="after")
    def _check_routing(self) -> ModelRouterConfig:
        for model, others in self.fallbacks.items():
            if model in others:
                raise ValueError(f"fallbacks.{model}: a model cannot be its own fallback")
        if self.auto is not None and any(d.model == "auto" for d in self.deployments):
            raise ValueError("auto: a deployment already serves a model named 'auto'")
        return self

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

    def listed_context_window(self, deployment: DeploymentConfig) -> int | None:
        """The deployment's context window from the price list; None when its model is not listed."""
        return context_window(
            self.providers[deployment.provider].price_list or deployment.provider,
            deployment.upstream_model or deployment.model,
        )

    def models(self) -> dict[str, str]:
        """Public model name -> provider name of its first deployment (OpenAI's ``owned_by``)."""
        out: dict[str, str] = {}
        for dep in sorted(self.deployments, key=lambda d: d.priority):
            out.setdefault(dep.model, dep.provider)
        return out


class ConfigError(Exception):
    pass


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


def _drop_disabled(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    providers = raw.get("providers") or {}
    if not isinstance(providers, dict):
        return raw
    disabled = {
        name
        for name, p in providers.items()
        if isinstance(p, dict) and p.get("enabled_if_env") and not env.get(p["enabled_if_env"])
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
    # Imported here: seed_settings builds on this module. The seeds' variables (seed_settings) are
    # read as ours, and their providers added, before the config is checked.
    from common import seed_settings

    try:
        env = seed_settings.environment(os.environ)
        expanded = seed_settings.apply(_expand(_drop_disabled(raw, env), env), env)
    except seed_settings.SeedSettingsError as exc:
        raise ConfigError(f"{source}: invalid seed setting: {exc}") from None
    try:
        return _priced(ModelRouterConfig.model_validate(expanded))
    except PriceListError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}" if loc else f"  {err['msg']}")
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def _priced(config: ModelRouterConfig) -> ModelRouterConfig:
    """Every deployment without a ``price`` of its own priced from the price list (unknown if absent)."""
    unpriced = [i for i, dep in enumerate(config.deployments) if "price" not in dep.model_fields_set]
    if not unpriced:
        return config
    deployments = list(config.deployments)
    for i in unpriced:
        dep = deployments[i]
        price = list_price(dep.provider, config.providers[dep.provider], dep.upstream_model or dep.model)
        deployments[i] = dep.model_copy(update={"price": price})
    return config.model_copy(update={"deployments": deployments})


def list_price(provider_name: str, provider: ProviderConfig, upstream_model: str) -> Price:
    """The price list's price of ``upstream_model`` at the provider (its ``price_list`` or its name),
    or an unknown price when the list does not have it: never zero for lack of a figure."""
    listed = load_price_list().find(provider.price_list or provider_name, upstream_model)
    if listed is None:
        return Price(unknown=True)
    return Price(
        prompt_per_1k=listed.prompt_per_1k,
        completion_per_1k=listed.completion_per_1k,
        cached_prompt_per_1k=listed.cached_prompt_per_1k,
    )


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
