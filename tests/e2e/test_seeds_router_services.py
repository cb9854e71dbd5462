"""Seed 001 (LLM Router), as its users set it up: the SHIPPED config plus its ``ROUTER_SERVICES`` JSON
(two backends with inline keys, priorities and sliding-window rate limits) and ``AUTH_KEY``, each
backend a local fake OpenAI-compatible upstream that lists its models; the README's own examples (curl,
the OpenAI SDK, ``/v1/models``) run against the four services as processes. The backends serve any
model name, in priority order: the second serves when the first fails or is over its rate limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from scripts.stack import ROOT
from tests.contract.server import Answer, Fail
from tests.e2e.helpers import OwnStack, own_stack
from tests.integration.listing_server import ListingServer

pytestmark = pytest.mark.e2e

PRIMARY_LIMIT = 4  # the primary's rate_limit_requests per 60 s window


@dataclass
class Seed001:
    own: OwnStack
    primary: ListingServer
    fallback: ListingServer
    names: tuple[str, str]
    keys: tuple[str, str]
    auth_key: str
    workdir: Path

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.auth_key}"}

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.own.base_url}/v1", api_key=self.auth_key, max_retries=0)


@pytest.fixture(scope="module")
def seed(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seed001]:
    suffix = uuid.uuid4().hex[:8]
    # Names of this run's own: a backend's rate limit and health live in Redis under its name.
    names = (f"primary-cerebras-{suffix}", f"fallback-openai-{suffix}")
    keys = (f"csk-inline-{suffix}", f"sk-inline-{suffix}")
    primary = ListingServer("openai", ["llama3.1-8b", "llama3.1-70b"])
    fallback = ListingServer("openai", ["gpt-3.5-turbo", "gpt-4"])
    primary.start()
    fallback.start()
    # the README's "Advanced Router Configuration", with the fakes' URLs
    services = [
        {
            "name": names[0],
            "backend_type": "cerebras",
            "base_url": primary.base_url,
            "api_key": keys[0],
            "priority": 0,
            "rate_limit_requests": PRIMARY_LIMIT,
            "rate_limit_window": 60,
        },
        {
            "name": names[1],
            "backend_type": "openai",
            "base_url": fallback.base_url,
            "api_key": keys[1],
            "priority": 1,
            "rate_limit_requests": 50,
            "rate_limit_window": 60,
        },
    ]
    auth_key = f"sk-your-secret-api-key-{suffix}"
    workdir = tmp_path_factory.mktemp("seed-001")
    try:
        with own_stack(
            (ROOT / "config" / "modelrouter.yaml").read_text(),  # the shipped config, unchanged
            redis_url=redis_url,
            nats_url=nats_url,
            database_url=database_url,
            workdir=workdir,
            env={"ROUTER_SERVICES": orjson.dumps(services, option=orjson.OPT_INDENT_2).decode(), "AUTH_KEY": auth_key},
        ) as own:
            yield Seed001(own, primary, fallback, names, keys, auth_key, workdir)
    finally:
        primary.stop()
        fallback.stop()


def test_the_curl_example_is_served_by_the_first_backend_with_its_key(seed: Seed001) -> None:
    answer = httpx.post(
        f"{seed.own.base_url}/v1/chat/completions",
        headers=seed.headers(),
        json={
            "model": "llama3.1-8b",
            "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "temperature": 0.7,
            "max_tokens": 150,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    [call] = seed.primary.received[-1:]
    assert (call.path, call.model, call.api_key) == ("/v1/chat/completions", "llama3.1-8b", seed.keys[0])
    assert (call.body["temperature"], call.body["max_tokens"]) == (0.7, 150)
    assert seed.fallback.received == []


def test_the_sdk_example_and_any_model_name(seed: Seed001) -> None:
    before = len(seed.primary.received)
    response = seed.client().chat.completions.create(
        model="llama3.1-8b", messages=[{"role": "user", "content": "Hello!"}]
    )
    assert response.choices[0].message.content
    # a name no backend lists still goes to the backends, as seed 001 forwards any model
    seed.client().chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hello!"}])
    assert [c.model for c in seed.primary.received[before:]] == ["llama3.1-8b", "gpt-4"]


def test_models_lists_what_the_backends_list(seed: Seed001) -> None:
    listed = httpx.get(f"{seed.own.base_url}/v1/models", headers=seed.headers())
    assert listed.status_code == 200
    owners = {m["id"]: m["owned_by"] for m in listed.json()["data"]}
    assert {k: owners.get(k) for k in ("llama3.1-8b", "llama3.1-70b", "gpt-3.5-turbo", "gpt-4")} == {
        "llama3.1-8b": seed.names[0],
        "llama3.1-70b": seed.names[0],
        "gpt-3.5-turbo": seed.names[1],
        "gpt-4": seed.names[1],
    }
    assert "*" not in owners
    one = httpx.get(f"{seed.own.base_url}/v1/models/llama3.1-8b", headers=seed.headers())
    assert (one.status_code, one.json()["id"]) == (200, "llama3.1-8b")
    assert seed.primary.listings[0]["authorization"] == f"Bearer {seed.keys[0]}"
    assert seed.fallback.listings[0]["authorization"] == f"Bearer {seed.keys[1]}"


def test_the_second_backend_serves_when_the_first_fails(seed: Seed001) -> None:
    before_primary, before_fallback = len(seed.primary.received), len(seed.fallback.received)
    seed.primary.scenario = Fail(500, "The server had an error while processing your request.")
    try:
        response = seed.client().chat.completions.create(
            model="llama3.1-8b", messages=[{"role": "user", "content": "Hello!"}]
        )
    finally:
        seed.primary.scenario = Answer()
    assert response.choices[0].message.content
    assert len(seed.primary.received) == before_primary + 1  # tried first, failed
    [served] = seed.fallback.received[before_fallback:]
    assert (served.model, served.api_key) == ("llama3.1-8b", seed.keys[1])


def test_the_second_backend_serves_when_the_first_is_over_its_rate_limit(seed: Seed001) -> None:
    # Every request so far in this module reached the primary once, in this 60 s window.
    served_by: list[str] = []
    for _ in range(PRIMARY_LIMIT + 1):
        before_fallback = len(seed.fallback.received)
        seed.client().chat.completions.create(model="llama3.1-8b", messages=[{"role": "user", "content": "Hi"}])
        served_by.append("fallback" if len(seed.fallback.received) > before_fallback else "primary")
        if served_by[-1] == "fallback":
            break
    assert served_by[-1] == "fallback"
    assert len(seed.primary.received) == PRIMARY_LIMIT  # exactly its rate_limit_requests, then no more
    assert seed.fallback.received[-1].api_key == seed.keys[1]


def test_the_inline_keys_reach_no_log(seed: Seed001) -> None:
    logs = "".join(path.read_text(errors="replace") for path in seed.workdir.glob("*.log"))
    assert logs
    for key in seed.keys:
        assert key not in logs
