"""The environment variables of the tools ModelRouter replaces (``shared/reference/seeds``), read
beside ModelRouter's own, so their users switch without renaming anything.

Two halves, both derived from the environment alone, so every service derives the same thing:

- ``environment(env)``: the environment as services read it, with the seeds' names added under
  ours (``HUGGINGFACE_API_TOKEN`` as ``HF_TOKEN``, seed 001's ``DEEPINFRA_TOKEN`` as
  ``DEEPINFRA_API_KEY``; ours win when both are set), ``OLLAMA_BASE_URL`` at the server's root as
  ``OLLAMA_SERVER_URL`` (seed 001 gives Ollama's OpenAI-compatible ``.../v1``, seed 000 the root; the
  shipped config's native ``ollama`` adapter speaks under the root), and each ``ROUTER_SERVICES``
  entry's inline ``api_key`` as a variable of its own (``ROUTER_SERVICE_<NAME>_API_KEY``). Config
  load reads this mapping (``${VAR}``, ``enabled_if_env``); the router's catalogue and discovery
  fetches and the workers' key lookups too. So a key given inline in ``ROUTER_SERVICES`` travels
  like every other key: a Target names the variable (``api_key_env``), never the secret, and the
  secret is never in a Job, a log or Redis; each process reads it from its own environment.
- ``apply(raw, env)``: the config (as parsed YAML) with the seeds' providers added:
  ``ROUTER_SERVICES`` (seed 001) becomes one provider per service, discovering what its backend
  lists, with a wildcard deployment (model ``*``: any name no other deployment serves) at the
  service's priority and rate limit; ``MODEL_LIST_URL`` / ``MODEL_LIST_AUTH_TOKEN`` (seed 002)
  become a remote catalogue provider whose adapters are inferred from each handle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.config import WILDCARD_MODEL

ROUTER_SERVICES = "ROUTER_SERVICES"
MODEL_LIST_URL = "MODEL_LIST_URL"
MODEL_LIST_AUTH_TOKEN = "MODEL_LIST_AUTH_TOKEN"
MODEL_LIST_PROVIDER = "model-list"
OLLAMA_BASE_URL = "OLLAMA_BASE_URL"
OLLAMA_SERVER_URL = "OLLAMA_SERVER_URL"  # OLLAMA_BASE_URL at the server's root: what the native adapter takes

# Our variable -> the seeds' names for the same thing, tried in order when ours is not set.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "HF_TOKEN": ("HUGGINGFACE_API_TOKEN",),  # seed 000
    "DEEPINFRA_API_KEY": ("DEEPINFRA_TOKEN",),  # seed 001
}

# Seed 001's backend types: all speak OpenAI's API (Ollama's through its /v1), at these URLs when
# the service names none.
BACKEND_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "ollama": "http://localhost:11434/v1",
    "custom": "",
}
BACKEND_ADAPTER = "openai"


class SeedSettingsError(ValueError):
    """A seed variable that cannot be read; the message names the variable and the field."""


class RouterService(BaseModel):
    """One entry of seed 001's ``ROUTER_SERVICES``; fields it documents but we do not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    backend_type: str = "custom"
    base_url: str = ""
    api_key: str = Field(default="", repr=False)
    priority: int = 0
    rate_limit_requests: int | None = Field(default=None, gt=0)
    rate_limit_window: float = Field(default=60.0, gt=0)

    @property
    def key_env(self) -> str:
        """The variable its ``api_key`` is read from in every service (see the module's docstring)."""
        return f"ROUTER_SERVICE_{re.sub(r'[^A-Z0-9]+', '_', self.name.upper()).strip('_')}_API_KEY"

    @property
    def rpm(self) -> int | None:
        """Its limit as requests per minute, the window deployments count in. Exact for the seed's
        60 s windows; another window keeps the same rate, not the same burst."""
        if self.rate_limit_requests is None:
            return None
        return max(1, math.ceil(self.rate_limit_requests * 60 / self.rate_limit_window))


def router_services(env: Mapping[str, str]) -> list[RouterService]:
    """``ROUTER_SERVICES`` read and checked; SeedSettingsError names what is wrong."""
    raw = env.get(ROUTER_SERVICES, "").strip()
    if not raw:
        return []
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SeedSettingsError(f"{ROUTER_SERVICES}: not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise SeedSettingsError(f"{ROUTER_SERVICES}: must be a JSON list of services")
    services: list[RouterService] = []
    for i, entry in enumerate(entries):
        try:
            service = RouterService.model_validate(entry)
        except ValidationError as exc:
            # The message names fields, never values: an api_key must not reach a log.
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise SeedSettingsError(f"{ROUTER_SERVICES}.{i}: {where}") from None
        if service.backend_type not in BACKEND_BASE_URLS:
            raise SeedSettingsError(
                f"{ROUTER_SERVICES}.{i}.backend_type: unknown {service.backend_type!r} "
                f"(known: {', '.join(sorted(BACKEND_BASE_URLS))})"
            )
        if not (service.base_url or BACKEND_BASE_URLS[service.backend_type]):
            raise SeedSettingsError(
                f"{ROUTER_SERVICES}.{i}.base_url: required for backend_type {service.backend_type!r}"
            )
        if any(s.key_env == service.key_env for s in services):
            raise SeedSettingsError(f"{ROUTER_SERVICES}.{i}.name: {service.name!r} is already a service's name")
        services.append(service)
    return services


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as the services read it (see the module's docstring), read once at start: a plain
    dict, because the workers look a key up in it for every job (a third of ``os.environ``'s cost,
    where a layered view would cost four times as much)."""
    derived: dict[str, str] = {}
    for ours, theirs in ENV_ALIASES.items():
        given = next((env[name] for name in theirs if env.get(name)), None)
        if given is not None:
            derived[ours] = given
    for service in router_services(env):
        if service.api_key:
            derived[service.key_env] = service.api_key
    if env.get(OLLAMA_BASE_URL):
        # A variable of its own, so a config that puts ${OLLAMA_BASE_URL} under the openai adapter
        # (Ollama's /v1) still gets the URL as given.
        derived[OLLAMA_SERVER_URL] = env[OLLAMA_BASE_URL].rstrip("/").removesuffix("/v1")
    return {**derived, **env}


def apply(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``raw`` (the config's YAML, expanded) with the seeds' providers and deployments added."""
    services = router_services(env)
    model_list_url = env.get(MODEL_LIST_URL)
    if not services and not model_list_url:
        return raw
    if not isinstance(raw.get("providers") or {}, dict) or not isinstance(raw.get("deployments") or [], list):
        return raw  # not a config's shape: its validation says so
    providers = dict(raw.get("providers") or {})
    deployments = list(raw.get("deployments") or [])
    for i, service in enumerate(services):
        if service.name in providers:
            raise SeedSettingsError(f"{ROUTER_SERVICES}.{i}.name: {service.name!r} is already a provider of the config")
        provider: dict[str, Any] = {
            "adapter": BACKEND_ADAPTER,
            "base_url": service.base_url or BACKEND_BASE_URLS[service.backend_type],
            "discover": True,  # /v1/models lists what the backends list
        }
        if service.api_key:
            provider["api_key_env"] = service.key_env
        providers[service.name] = provider
        deployment: dict[str, Any] = {
            "id": f"{service.name}/{WILDCARD_MODEL}",
            "model": WILDCARD_MODEL,
            "provider": service.name,
            "priority": service.priority,
        }
        if service.rpm is not None:
            deployment["rpm"] = service.rpm
        deployments.append(deployment)
    if model_list_url:
        if MODEL_LIST_PROVIDER in providers:
            raise SeedSettingsError(f"{MODEL_LIST_URL}: {MODEL_LIST_PROVIDER!r} is already a provider of the config")
        catalog: dict[str, Any] = {"url": model_list_url, "infer_adapters": True}
        if env.get(MODEL_LIST_AUTH_TOKEN):  # seed 002: without it, no Authorization header at all
            catalog["token_env"] = MODEL_LIST_AUTH_TOKEN
        providers[MODEL_LIST_PROVIDER] = {"catalog": catalog}
    return {**raw, "providers": providers, "deployments": deployments}
