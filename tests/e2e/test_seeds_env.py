"""Seeds 000 and 002, as their users set them up: the SHIPPED config, with only the seeds' environment
variables (OPENAI_API_KEY, OLLAMA_BASE_URL, HUGGINGFACE_API_TOKEN; MODEL_LIST_URL and
MODEL_LIST_AUTH_TOKEN; seed 001's "Simple Configuration" CEREBRAS_API_KEY and its DEEPINFRA_TOKEN), each provider's base URL pointed at a local fake
upstream speaking its real wire format (model listings included), and each seed README's own example
run against the four services as processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from scripts.stack import ROOT
from tests.contract.server import UpstreamServer
from tests.contract.upstreams import wire_of
from tests.e2e.helpers import OwnStack, one_usage_row, own_stack
from tests.integration.catalog_server import CatalogServer, entry
from tests.integration.listing_server import ListingServer

pytestmark = pytest.mark.e2e

SEED_KEY = "test-key"  # seed 000's "Default API key for testing"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me about machine learning."},
]
FIREWORKS = "accounts/fireworks/models/llama-v3p1-405b-instruct"


@dataclass
class Seeds:
    own: OwnStack
    oai: ListingServer
    ollama: ListingServer
    huggingface: UpstreamServer
    deepinfra: UpstreamServer
    catalog: CatalogServer
    cerebras: ListingServer
    secrets: dict[str, str]
    workdir: Path

    def client(self) -> openai.OpenAI:
        # Seed 000's README, verbatim but for the port.
        return openai.OpenAI(api_key=SEED_KEY, base_url=f"{self.own.base_url}/v1", max_retries=0)


@pytest.fixture(scope="module")
def seeds(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeds]:
    suffix = uuid.uuid4().hex[:8]
    secrets = {
        "OPENAI_API_KEY": f"sk-seed000-openai-{suffix}",
        "HUGGINGFACE_API_TOKEN": f"hf_seed000{suffix}",
        "DEEPINFRA_TOKEN": f"di-seed001-{suffix}",
        "MODEL_LIST_AUTH_TOKEN": f"oauth-seed002-{suffix}",
        "CEREBRAS_API_KEY": f"csk-seed001-{suffix}",
    }
    upstreams = (
        ListingServer("openai", ["gpt-3.5-turbo", "text-embedding-ada-002", "gpt-4o-mini"]),
        ListingServer("ollama", ["llama2:latest"]),
        UpstreamServer(wire_of("openai")),
        UpstreamServer(wire_of("openai")),
        CatalogServer(
            token=secrets["MODEL_LIST_AUTH_TOKEN"],
            # seed 002's "Example Source Model List Format", verbatim
            models=[
                entry("gpt-4o-audio-preview-2024-10-01", "gpt-4", "/openai/v1/chat/completions", 0.0025, 0.01),
                entry(FIREWORKS, "fireworks", "/fireworks/chat/completions", 0.003, 0.003),
                entry("claude-3-7-sonnet-20250219", "claude-3", "/anthropic/v1/messages", 0.003, 0.015),
            ],
        ),
        ListingServer("openai", ["llama3.1-8b", "llama3.1-70b"]),
    )
    for upstream in upstreams:
        upstream.start()
    oai, ollama, hf, deepinfra, catalog, cerebras = upstreams
    workdir = tmp_path_factory.mktemp("seeds-env")
    env = {
        **secrets,
        "API_KEYS": SEED_KEY,
        "OPENAI_BASE_URL": oai.base_url,
        "OLLAMA_BASE_URL": ollama.base_url,
        "HF_BASE_URL": hf.base_url,
        "DEEPINFRA_BASE_URL": deepinfra.base_url,
        "MODEL_LIST_URL": catalog.catalog_url,
        "CEREBRAS_BASE_URL": cerebras.base_url,
    }
    try:
        with own_stack(
            (ROOT / "config" / "modelrouter.yaml").read_text(),  # the shipped config, unchanged
            redis_url=redis_url,
            nats_url=nats_url,
            database_url=database_url,
            workdir=workdir,
            env=env,
        ) as own:
            yield Seeds(own, oai, ollama, hf, deepinfra, catalog, cerebras, secrets, workdir)
    finally:
        for upstream in upstreams:
            upstream.stop()


# --- seed 000 -----------------------------------------------------------------------------------------


def test_seed_000_chat_with_an_openai_model_it_never_configured(seeds: Seeds) -> None:
    seeds.oai.reset()
    raw = seeds.client().chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=MESSAGES)
    response = raw.parse()
    assert response.choices[0].message.content
    [call] = seeds.oai.received
    assert (call.path, call.model, call.api_key) == (
        "/v1/chat/completions",
        "gpt-3.5-turbo",
        seeds.secrets["OPENAI_API_KEY"],
    )
    assert seeds.oai.listings[0]["authorization"] == f"Bearer {seeds.secrets['OPENAI_API_KEY']}"
    row = asyncio.run(one_usage_row(seeds.own.database_url, raw.headers["x-request-id"]))
    assert (row["status"], row["deployment_id"], row["upstream_model"]) == (
        "success",
        "openai/gpt-3.5-turbo",
        "gpt-3.5-turbo",
    )


def test_seed_000_chat_with_llama2_served_by_ollama_as_llama2_latest(seeds: Seeds) -> None:
    seeds.ollama.reset()
    response = seeds.client().chat.completions.create(model="llama2", messages=MESSAGES)
    assert response.choices[0].message.content
    [call] = seeds.ollama.received
    assert (call.path, call.model) == ("/api/chat", "llama2:latest")


def test_seed_000_embeddings(seeds: Seeds) -> None:
    seeds.oai.reset()
    response = seeds.client().embeddings.create(model="text-embedding-ada-002", input="Machine learning is fascinating")
    assert response.data[0].embedding[:2] == [float(len("Machine learning is fascinating")), 0.0]
    [call] = seeds.oai.received
    assert (call.path, call.model) == ("/v1/embeddings", "text-embedding-ada-002")


def test_seed_000_x_api_key_header_and_models_list(seeds: Seeds) -> None:
    listed = httpx.get(f"{seeds.own.base_url}/v1/models", headers={"X-Api-Key": SEED_KEY})
    assert listed.status_code == 200
    owners = {m["id"]: m["owned_by"] for m in listed.json()["data"]}
    assert {k: owners.get(k) for k in ("gpt-3.5-turbo", "text-embedding-ada-002", "llama2", "llama2:latest")} == {
        "gpt-3.5-turbo": "openai",
        "text-embedding-ada-002": "openai",
        "llama2": "ollama",
        "llama2:latest": "ollama",
    }
    seeds.oai.reset()
    answer = httpx.post(
        f"{seeds.own.base_url}/v1/chat/completions",
        headers={"X-Api-Key": SEED_KEY},
        json={"model": "gpt-3.5-turbo", "messages": MESSAGES},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"


def test_seed_000_huggingface_api_token_reaches_huggingface_as_its_bearer(seeds: Seeds) -> None:
    seeds.huggingface.reset()
    response = seeds.client().chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct", messages=MESSAGES)
    assert response.choices[0].message.content
    [call] = seeds.huggingface.received
    assert call.headers["authorization"] == f"Bearer {seeds.secrets['HUGGINGFACE_API_TOKEN']}"
    assert call.model == "meta-llama/Llama-3.1-8B-Instruct"


def test_seed_001_deepinfra_token_reaches_deepinfra_as_its_bearer(seeds: Seeds) -> None:
    seeds.deepinfra.reset()
    response = seeds.client().chat.completions.create(
        model="deepinfra/meta-llama/Meta-Llama-3.1-8B-Instruct",
        messages=[{"role": "user", "content": "Hello!"}],
    )
    assert response.choices[0].message.content
    [call] = seeds.deepinfra.received
    assert call.headers["authorization"] == f"Bearer {seeds.secrets['DEEPINFRA_TOKEN']}"
    assert call.model == "meta-llama/Meta-Llama-3.1-8B-Instruct"


def test_seed_001_simple_configuration_curl_example_reaches_cerebras(seeds: Seeds) -> None:
    seeds.cerebras.reset()
    # seed 001's README "Chat Completions" example request, verbatim but for the port and key
    answer = httpx.post(
        f"{seeds.own.base_url}/v1/chat/completions",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {SEED_KEY}"},
        json={
            "model": "llama3.1-8b",
            "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "temperature": 0.7,
            "max_tokens": 150,
        },
    )
    assert answer.status_code == 200, answer.text
    [call] = seeds.cerebras.received
    assert (call.path, call.model, call.api_key) == (
        "/v1/chat/completions",
        "llama3.1-8b",
        seeds.secrets["CEREBRAS_API_KEY"],
    )
    listed = {m.id: m.owned_by for m in seeds.client().models.list()}
    assert (listed["llama3.1-8b"], listed["llama3.1-70b"]) == ("cerebras", "cerebras")


# --- seed 002 -----------------------------------------------------------------------------------------


def test_seed_002_models_are_the_fetched_list(seeds: Seeds) -> None:
    models = {m.id: m.owned_by for m in seeds.client().models.list()}
    for version in ("gpt-4o-audio-preview-2024-10-01", FIREWORKS, "claude-3-7-sonnet-20250219"):
        assert models[version] == "model-list"
    assert all(
        f["authorization"] == f"OAuth {seeds.secrets['MODEL_LIST_AUTH_TOKEN']}" for f in seeds.catalog.catalog_fetches
    )


def test_seed_002_example_request_is_proxied_to_its_handle_with_the_oauth_header(seeds: Seeds) -> None:
    seeds.catalog.reset()
    # seed 002's "Example Request", verbatim
    answer = httpx.post(
        f"{seeds.own.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {SEED_KEY}"},
        json={"model": FIREWORKS, "messages": [{"role": "user", "content": "Hello!"}], "temperature": 0.7},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    [call] = seeds.catalog.received
    assert call.path == "/fireworks/chat/completions"
    assert call.headers["authorization"] == f"OAuth {seeds.secrets['MODEL_LIST_AUTH_TOKEN']}"
    assert (call.model, call.body["temperature"]) == (FIREWORKS, 0.7)
    row = asyncio.run(one_usage_row(seeds.own.database_url, answer.headers["x-request-id"]))
    assert row["deployment_id"] == f"model-list/{FIREWORKS}"


def test_the_ready_details_show_the_catalogue_and_the_listings(seeds: Seeds) -> None:
    shown = {c["provider"]: c for c in httpx.get(f"{seeds.own.base_url}/ready").json()["details"]["catalogs"]}
    assert (shown["model-list"]["models"], shown["model-list"]["skipped"], shown["model-list"]["last_error"]) == (
        3,
        0,
        None,
    )
    assert (shown["openai"]["models"], shown["openai"]["last_error"]) == (2, None)  # gpt-4o-mini is configured
    assert (shown["ollama"]["models"], shown["ollama"]["url"]) == (2, f"{seeds.ollama.base_url}/api/tags")


def test_no_secret_reaches_a_log(seeds: Seeds) -> None:
    logs = "".join(path.read_text(errors="replace") for path in seeds.workdir.glob("*.log"))
    assert logs  # the services did write their logs here
    for name, secret in seeds.secrets.items():
        assert secret not in logs, f"{name} is in a log"
