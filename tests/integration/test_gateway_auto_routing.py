"""Auto routing, the gateway's side, end to end but for the router: HTTP in, the real RouterClient
over gRPC to a router that records what it is asked, a real worker over NATS serving the `fake`
provider. The Route the gateway sends carries the prompt's class for ``auto`` and for a body without
a model when the default model is ``auto``; a named model is routed as before, unclassified."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from common.messaging import connect_nats
from common.settings import GatewaySettings
from gateway.app import create_app
from gateway.auto_routing import AutoRouting
from gateway.deps import Gateway
from gateway.dispatch import Dispatcher
from gateway.job_bodies import JobBodies
from gateway.keyring import Keyring
from gateway.replies import ReplyHub
from gateway.router_client import RouterClient
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from tests.contract.worker_jobs import InProcessWorker, in_process_worker
from tests.integration.recording_router import RecordingRouter, recording_router

pytestmark = pytest.mark.integration

KEY = "sk-auto-routing-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CODE_PROMPT = "Write a Python function that merges two sorted lists."
COMPLEX_PROMPT = "Prove that there are infinitely many prime numbers."


class _Usage:
    def __init__(self) -> None:
        self.events: list[events_pb2.UsageEvent] = []

    def publish(self, event: events_pb2.UsageEvent, parent: str | None = None) -> None:
        self.events.append(event)


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[InProcessWorker]:
    async with in_process_worker(nats_url) as running:
        yield running


Stack = Callable[[str], Any]  # default model -> an async context manager of (client, router)


@pytest.fixture
def stack(nats_url: str, worker: InProcessWorker) -> Stack:
    @asynccontextmanager
    async def start(default_model: str) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingRouter]]:
        servicer = RecordingRouter(
            target=router_pb2.Target(
                deployment_id="dep-fake", provider="fake", upstream_model="fake-model", model="demo", timeout_s=10
            )
        )
        instance = f"gw{uuid.uuid4().hex[:10]}"
        async with recording_router(servicer) as running:
            nc = await connect_nats(nats_url, f"test-{instance}")
            hub, bodies = ReplyHub(nc, instance), JobBodies(nc, instance)
            await hub.start()
            await bodies.start()
            router = RouterClient(running.address)
            dispatcher = Dispatcher(
                router,
                nc,
                hub,
                _Usage(),  # type: ignore[arg-type]
                bodies,
                accept_timeout_s=10,
                stall_timeout_s=10,
                max_attempts=1,
                jobs_subject=worker.jobs_subject,
            )
            settings = GatewaySettings(api_keys=KEY)
            gateway = Gateway(
                settings, Keyring(settings, []), router, dispatcher, nc, auto=AutoRouting(default_model=default_model)
            )
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")
            try:
                yield client, servicer
            finally:
                await client.aclose()
                await dispatcher.drain(2)
                await router.close()
                await hub.stop()
                await bodies.stop()
                await nc.drain()

    return start


def _chat(prompt: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], **fields}


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, content=orjson.dumps(body), headers=AUTH)


async def test_model_auto_is_routed_as_auto_with_the_prompts_class(stack: Stack) -> None:
    async with stack("") as (client, router):
        answer = await _post(client, "/v1/chat/completions", _chat(CODE_PROMPT, model="auto"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]  # the fake provider answered
        streamed = await _post(client, "/v1/chat/completions", _chat(COMPLEX_PROMPT, model="auto", stream=True))
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
        completion = await _post(client, "/v1/completions", {"model": "auto", "prompt": "What is 2+2?"})
        assert completion.status_code == 200, completion.text
    asked = [(r.model, r.prompt_class) for r in router.routes]
    assert asked == [("auto", "code"), ("auto", "complex"), ("auto", "simple")]


async def test_a_body_without_model_takes_the_default_auto_and_is_classified(stack: Stack) -> None:
    async with stack("auto") as (client, router):
        answer = await _post(client, "/v1/chat/completions", _chat(COMPLEX_PROMPT, max_tokens=50))
        assert answer.status_code == 200, answer.text
        streamed = await _post(client, "/v1/chat/completions", _chat("What is the capital of France?", stream=True))
        assert streamed.status_code == 200
    assert [(r.model, r.prompt_class) for r in router.routes] == [("auto", "complex"), ("auto", "simple")]


async def test_a_named_default_model_is_routed_unclassified(stack: Stack) -> None:
    """Seed 004's DEFAULT_MODEL=gpt-3.5-turbo: a body without model goes to that model."""
    async with stack("gpt-3.5-turbo") as (client, router):
        answer = await _post(client, "/v1/chat/completions", _chat(CODE_PROMPT))
        assert answer.status_code == 200, answer.text
    assert [(r.model, r.prompt_class) for r in router.routes] == [("gpt-3.5-turbo", "")]


async def test_a_named_model_is_not_classified(stack: Stack) -> None:
    async with stack("auto") as (client, router):
        answer = await _post(client, "/v1/chat/completions", _chat(CODE_PROMPT, model="demo"))
        assert answer.status_code == 200, answer.text
    assert [(r.model, r.prompt_class) for r in router.routes] == [("demo", "")]


async def test_without_a_default_a_body_without_model_is_still_a_400_and_routes_nothing(stack: Stack) -> None:
    async with stack("") as (client, router):
        answer = await _post(client, "/v1/chat/completions", _chat(CODE_PROMPT))
        empty = await _post(client, "/v1/chat/completions", _chat(CODE_PROMPT, model=""))
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "message": "Missing required parameter: 'model'.",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "model"
    assert router.routes == []


async def test_anthropic_messages_with_model_auto_are_classified(stack: Stack) -> None:
    async with stack("") as (client, router):
        body = {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": CODE_PROMPT}]}
        answer = await client.post("/v1/messages", content=orjson.dumps(body), headers={"x-api-key": KEY})
        assert answer.status_code == 200, answer.text
        assert answer.json()["type"] == "message"
    assert [(r.model, r.prompt_class) for r in router.routes] == [("auto", "code")]


async def test_embeddings_named_auto_are_not_classified(stack: Stack) -> None:
    """Auto routing picks among chat models by the prompt: an embeddings request has none to read."""
    async with stack("auto") as (client, router):
        answer = await _post(client, "/v1/embeddings", {"model": "auto", "input": "hello"})
        assert answer.status_code == 200, answer.text
        missing = await _post(client, "/v1/embeddings", {"input": "hello"})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
    assert [(r.model, r.prompt_class) for r in router.routes] == [("auto", "")]
