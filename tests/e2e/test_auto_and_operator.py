"""Auto routing and the operator's view on the real stack: each prompt class reaches the model the
config maps it to, and every answer (whole or streamed, parsed by the official SDK) says so in its
``router_metadata`` and headers; a body without a model takes the default, ``auto``. The operator's
endpoints then show what the routers counted, read from their shared Redis state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.helpers import OwnStack, own_stack

pytestmark = pytest.mark.e2e

MASTER = "sk-master-auto-e2e-0123456789abcdef"
KEY = "sk-auto-e2e-client-0123456789"

# One clear prompt per class, each a line of tests/data/prompt_classes.jsonl's kind.
PROMPTS = {
    "code": "Write a Python function that reverses a linked list.",
    "complex": "Analyze the trade-offs between microservices and a monolith step by step, and explain "
    "which one a small team should choose and why.",
    "simple": "What is the capital of France?",
    "general": "Tell me about the history of jazz music",
}
SERVES = {"code": "coder", "complex": "thinker", "simple": "quick", "general": "chatty"}


def auto_config(u: str) -> str:
    deployments = "\n".join(
        f"  - {{id: {model}-{u}, model: {model}, provider: fake, upstream_model: {model}-up,"
        f" price: {{prompt_per_1k: 0.00{n + 1}, completion_per_1k: 0.00{n + 2}}}}}"
        for n, model in enumerate(SERVES.values())
    )
    classes = ", ".join(f"{cls}: [{model}]" for cls, model in SERVES.items())
    return f"""
providers:
  fake: {{adapter: fake}}
deployments:
{deployments}
auto: {{classes: {{{classes}}}}}
default_model: auto
keys:
  - {{key: {KEY}, id: auto-client}}
"""


@pytest.fixture(scope="module")
def stack(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnStack]:
    u = uuid.uuid4().hex[:8]
    with own_stack(
        auto_config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("auto")),
        env={"MODELROUTER_MASTER_KEY": MASTER},
    ) as running:
        yield running


@pytest.fixture
def client(stack: OwnStack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=KEY, base_url=f"{stack.base_url}/v1", max_retries=0, timeout=30)


def _check(metadata: dict[str, Any], prompt_class: str) -> None:
    model = SERVES[prompt_class]
    assert metadata["prompt_class"] == prompt_class
    assert metadata["selected_model"] == model
    assert metadata["deployment_id"].startswith(f"{model}-")
    assert metadata["selected_provider"] == "fake"
    assert metadata["attempts"] == 1
    assert metadata["strategy"] and metadata["reason"]
    assert float(metadata["estimated_cost"]) > 0


@pytest.mark.parametrize("prompt_class", list(PROMPTS))
async def test_each_class_reaches_its_model_and_the_answer_says_so(
    client: openai.AsyncOpenAI, prompt_class: str
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": PROMPTS[prompt_class]}], max_tokens=16
    )
    answer = raw.parse()
    assert answer.model == f"{SERVES[prompt_class]}-up"
    _check((answer.model_extra or {})["router_metadata"], prompt_class)
    assert raw.headers["x-modelrouter-prompt-class"] == prompt_class
    assert raw.headers["x-modelrouter-selected-model"] == SERVES[prompt_class]


@pytest.mark.parametrize("prompt_class", list(PROMPTS))
async def test_a_streamed_answer_says_it_in_its_last_chunk(client: openai.AsyncOpenAI, prompt_class: str) -> None:
    chunks = [
        chunk
        async for chunk in await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": PROMPTS[prompt_class]}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    assert {c.model for c in chunks} == {f"{SERVES[prompt_class]}-up"}
    _check((chunks[-1].model_extra or {})["router_metadata"], prompt_class)


async def test_a_body_without_a_model_takes_the_default_auto(stack: OwnStack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        answer = await http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": PROMPTS["code"]}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert answer.status_code == 200, answer.text
    _check(answer.json()["router_metadata"], "code")


async def test_the_operators_view_counts_what_was_routed(stack: OwnStack, client: openai.AsyncOpenAI) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        master = {"Authorization": f"Bearer {MASTER}"}
        created = await http.post("/admin/keys", json={"name": "ops-view", "rpm": 50}, headers=master)
        assert created.status_code == 201, created.text
        limited = created.json()
        for _ in range(3):
            served = await http.post(
                "/v1/chat/completions",
                json={"model": "quick", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                headers={"Authorization": f"Bearer {limited['key']}"},
            )
            assert served.status_code == 200, served.text

        for path in ("/router/stats", "/router/health", "/router/rate-limits", "/providers"):
            assert (await http.get(path)).status_code == 401
            # (The config's keys are operators' keys; one made over the admin API is a client's.)
            refused = await http.get(path, headers={"Authorization": f"Bearer {limited['key']}"})
            assert refused.status_code == 403 and refused.json()["error"]["type"]

        stats = (await http.get("/router/stats", headers=master)).json()
        by_model = {d["model"]: d for d in stats["deployments"]}
        assert set(by_model) == set(SERVES.values())
        # This module's requests so far: every class twice (whole, streamed), code once more
        # (the default model), and quick three times more just now.
        assert by_model["quick"]["requests"] == 2 + 3
        assert by_model["coder"]["requests"] == 3
        assert by_model["thinker"]["requests"] == by_model["chatty"]["requests"] == 2
        assert stats["totals"]["requests"] == 12 and stats["totals"]["failures"] == 0

        health = (await http.get("/router/health", headers=master)).json()
        assert health["status"] == "healthy" and health["unhealthy"] == 0

        limits = (await http.get("/router/rate-limits", headers=master)).json()
        [key] = [k for k in limits["keys"] if k["key_id"] == limited["id"]]
        assert key["requests"]["limit"] == 50 and key["requests"]["used"] == 3
        assert key["requests"]["remaining"] == 47

        providers = (await http.get("/providers", headers=master)).json()
        [fake] = providers["providers"]
        assert fake["name"] == "fake" and fake["available"] is True
        assert fake["models"] == sorted(SERVES.values())

        root = (await http.get("/")).json()
        assert root["name"] == "ModelRouter" and root["backends"]["total"] == 4
        info = (await http.get("/backend/info", headers=master)).json()
        assert {b["model"] for b in info["backends"]} == set(SERVES.values())


async def test_models_list_auto_once_beside_the_models(client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert sorted(ids) == sorted(["auto", *SERVES.values()])
