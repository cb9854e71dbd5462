"""Discovery in the router: providers with ``discover`` list their upstream's models (a local fake
speaking OpenAI's ``GET /v1/models``, another Ollama's ``GET /api/tags``), through the real grpc.aio
server on an ephemeral port, with routing state in the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import grpc.aio
import httpx
import pytest
import yaml
from redis.asyncio import Redis

from common.config import parse_config
from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from router.catalog_refresh import CatalogRefresher
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from router.wildcard import routing_table
from tests.integration.listing_server import ListingServer
from tests.integration.test_catalog_router import eventually

pytestmark = pytest.mark.integration

OPENAI_KEY = "sk-discovery-test-key"


@dataclass
class Running:
    stub: router_pb2_grpc.RouterStub
    openai: ListingServer
    ollama: ListingServer

    async def models(self) -> dict[str, str]:
        listed = (await self.stub.ListModels(router_pb2.ListModelsRequest())).models
        return {m.id: m.owned_by for m in listed}

    async def statuses(self) -> dict[str, router_pb2.CatalogStatus]:
        return {s.provider: s for s in (await self.stub.Status(router_pb2.StatusRequest())).catalogs}

    async def route(self, model: str) -> router_pb2.Target:
        return (await self.stub.Route(router_pb2.RouteRequest(model=model, estimated_tokens=5))).target


@pytest.fixture
def openai_upstream() -> Iterator[ListingServer]:
    with ListingServer("openai", ["gpt-3.5-turbo", "text-embedding-ada-002", "gpt-4o-mini"]) as server:
        yield server


@pytest.fixture
def ollama_upstream() -> Iterator[ListingServer]:
    with ListingServer("ollama", ["llama2:latest", "mistral:7b-instruct"]) as server:
        yield server


@pytest.fixture
async def start_router(
    openai_upstream: ListingServer, ollama_upstream: ListingServer, redis: Redis, unique: str
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    async with AsyncExitStack() as cleanup:

        async def start(refresh_s: float = 3600, key: str = OPENAI_KEY) -> Running:
            config = parse_config(
                yaml.safe_dump(
                    {
                        "providers": {
                            "openai": {
                                "adapter": "openai",
                                "base_url": openai_upstream.base_url,
                                "api_key_env": f"MR_TEST_OPENAI_{unique}",
                                "discover": {"refresh_s": refresh_s},
                            },
                            "ollama": {
                                "adapter": "ollama",
                                "base_url": ollama_upstream.base_url,
                                "discover": {"refresh_s": refresh_s},
                            },
                        },
                        # The config's own deployment of a listed model, with its price, stays the one served.
                        "deployments": [
                            {
                                "id": f"mini-{unique}",
                                "model": "gpt-4o-mini",
                                "provider": "openai",
                                "price": {"prompt_per_1k": 0.15},
                            }
                        ],
                    }
                )
            )
            state = RouterState(redis, config.health, key_prefix=f"mr:test:{unique}:")
            await state.load_scripts()
            http = httpx.AsyncClient()
            cleanup.push_async_callback(http.aclose)
            table = routing_table(config)
            refresher = CatalogRefresher(
                config, table, http, {f"MR_TEST_OPENAI_{unique}": key}, retry_after_failure_s=refresh_s
            )
            await refresher.start()
            cleanup.push_async_callback(refresher.stop)
            server = RouterServer(RouterServicer(table, state, refresher), "127.0.0.1:0")
            await server.start()
            cleanup.push_async_callback(server.stop, 0)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            cleanup.push_async_callback(channel.close)
            return Running(router_pb2_grpc.RouterStub(channel), openai_upstream, ollama_upstream)

        yield start


async def test_listed_models_are_routable_at_start_with_the_providers_key(
    start_router: Callable[..., Awaitable[Running]], unique: str
) -> None:
    router = await start_router()
    [listing] = router.openai.listings
    assert listing["authorization"] == f"Bearer {OPENAI_KEY}"
    assert await router.models() == {
        "gpt-4o-mini": "openai",
        "gpt-3.5-turbo": "openai",
        "text-embedding-ada-002": "openai",
        "llama2:latest": "ollama",
        "llama2": "ollama",
        "mistral:7b-instruct": "ollama",
    }
    target = await router.route("gpt-3.5-turbo")
    assert (target.deployment_id, target.provider, target.upstream_model) == (
        "openai/gpt-3.5-turbo",
        "openai",
        "gpt-3.5-turbo",
    )
    assert (target.base_url, target.api_key_env) == (router.openai.base_url, f"MR_TEST_OPENAI_{unique}")
    # listed by the upstream, but configured: the config's deployment (and its price) is the only one
    configured = await router.route("gpt-4o-mini")
    assert configured.deployment_id == f"mini-{unique}"
    assert configured.price.prompt_per_1k == pytest.approx(0.15)
    statuses = await router.statuses()
    assert statuses["openai"].url == f"{router.openai.base_url}/models"
    assert (statuses["openai"].models, statuses["openai"].last_error) == (2, "")
    assert (statuses["ollama"].url, statuses["ollama"].models) == (f"{router.ollama.base_url}/api/tags", 3)


async def test_an_ollama_model_is_served_without_its_latest_tag(
    start_router: Callable[..., Awaitable[Running]],
) -> None:
    router = await start_router()
    bare = await router.route("llama2")
    assert (bare.deployment_id, bare.provider, bare.upstream_model) == ("ollama/llama2", "ollama", "llama2:latest")
    tagged = await router.route("llama2:latest")
    assert (tagged.deployment_id, tagged.upstream_model) == ("ollama/llama2:latest", "llama2:latest")
    other = await router.route("mistral:7b-instruct")
    assert other.upstream_model == "mistral:7b-instruct"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.route("mistral")  # only the default tag may be left out
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "authorization" not in router.ollama.listings[0]  # a provider without a key lists without one


async def test_the_periodic_refresh_picks_up_a_newly_pulled_model(
    start_router: Callable[..., Awaitable[Running]],
) -> None:
    router = await start_router(refresh_s=0.2)
    router.ollama.serve(["llama2:latest", "mistral:7b-instruct", "codellama:latest"])
    await eventually(router.models, lambda models: "codellama" in models)
    assert (await router.route("codellama")).upstream_model == "codellama:latest"
    router.openai.serve(["gpt-4o-mini"])  # a model the upstream stopped listing stops being served
    await eventually(router.models, lambda models: "gpt-3.5-turbo" not in models)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.route("gpt-3.5-turbo")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(router.ollama.listings) >= 2


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda s: setattr(s, "failure", 503), "the model listing answered HTTP 503"),
        (lambda s: setattr(s, "raw", b"<html>down</html>"), "the model listing is not JSON"),
        (lambda s: setattr(s, "raw", b'{"items": []}'), 'not an object with a "data" list'),
    ],
    ids=["http-503", "not-json", "not-a-listing"],
)
async def test_a_failed_listing_keeps_the_last_list_and_is_reported(
    start_router: Callable[..., Awaitable[Running]], break_it: Callable[[ListingServer], None], error: str
) -> None:
    router = await start_router(refresh_s=0.2)
    good = (await router.statuses())["openai"]
    break_it(router.openai)
    failed = await eventually(router.statuses, lambda s: s["openai"].consecutive_failures >= 2)
    assert error in failed["openai"].last_error
    assert (failed["openai"].models, failed["openai"].last_success) == (2, good.last_success)
    assert "gpt-3.5-turbo" in await router.models()
    assert (await router.route("gpt-3.5-turbo")).deployment_id == "openai/gpt-3.5-turbo"
    assert failed["ollama"].last_error == ""  # the other provider's listing is its own

    router.openai.serve(["gpt-3.5-turbo"])
    recovered = await eventually(router.statuses, lambda s: s["openai"].last_error == "")
    assert (recovered["openai"].models, recovered["openai"].consecutive_failures) == (1, 0)
    assert "text-embedding-ada-002" not in await router.models()


async def test_a_missing_key_is_reported_and_nothing_is_discovered(
    start_router: Callable[..., Awaitable[Running]],
) -> None:
    router = await start_router(key="")
    status = (await router.statuses())["openai"]
    assert status.last_error.endswith("is not set")
    assert router.openai.listings == []  # no listing is asked for without the key
    assert "gpt-3.5-turbo" not in await router.models()
    assert "gpt-4o-mini" in await router.models()  # the config's own deployment is unaffected
