"""Remote model catalogues in the router: a real catalogue over HTTP (checking the OAuth header), the
real grpc.aio server on an ephemeral port, routing state in the real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
import httpx
import nats
import pytest
import yaml
from redis.asyncio import Redis

from common.config import AUTH_SCHEME_OPTION, ENDPOINT_OPTION, parse_config
from common.settings import GatewaySettings
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.keyring import Keyring
from gateway.router_client import RouterClient
from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from router.catalog_refresh import CatalogRefresher
from router.selection import LiveCatalog
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from tests.integration.catalog_server import CatalogServer, entry

pytestmark = pytest.mark.integration

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 10.0) -> T:
    """``probe()`` until ``ok`` holds; fails the test with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last value: {value}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    catalog: CatalogServer
    address: str
    stub: router_pb2_grpc.RouterStub
    provider: str
    token_env: str
    static_model: str

    async def model_ids(self) -> set[str]:
        return {m.id for m in (await self.stub.ListModels(router_pb2.ListModelsRequest())).models}

    async def status(self) -> router_pb2.CatalogStatus:
        [status] = (await self.stub.Status(router_pb2.StatusRequest())).catalogs
        return status

    async def route(self, model: str) -> router_pb2.RouteResponse:
        return await self.stub.Route(router_pb2.RouteRequest(model=model, estimated_tokens=5))


@pytest.fixture
def catalog(unique: str) -> Iterator[CatalogServer]:
    server = CatalogServer(
        token=f"tok-{unique}",
        models=[
            entry(f"big-{unique}", "gpt", "/serving/big/v1", prompt=0.3, completion=1.2),
            entry(f"small-{unique}", "tiny", "serving/small/v1"),
            entry(f"odd-{unique}", "not-mapped", "/serving/odd/v1"),
        ],
    )
    server.start()
    yield server
    server.stop()


StartRouter = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_router(catalog: CatalogServer, redis: Redis, unique: str) -> AsyncIterator[StartRouter]:
    """Starts a router whose config has a static model and one catalogue provider."""
    async with AsyncExitStack() as cleanup:

        async def start(*, refresh_s: float = 0.2, token: str | None = None) -> Running:
            provider, token_env = f"cat-{unique}", f"MR_TEST_CATALOG_TOKEN_{unique}"
            config = parse_config(
                yaml.safe_dump(
                    {
                        "providers": {
                            "fake": {"adapter": "fake"},
                            provider: {
                                "timeout_s": 7,
                                "catalog": {
                                    "url": catalog.catalog_url,
                                    "refresh_s": refresh_s,
                                    "token_env": token_env,
                                    "families": {"gpt": "openai", "tiny": "fake"},
                                },
                            },
                        },
                        "deployments": [{"id": f"static-{unique}", "model": f"static-{unique}", "provider": "fake"}],
                    }
                )
            )
            state = RouterState(redis, config.health, key_prefix=f"mr:test:{unique}:")
            await state.load_scripts()
            http = httpx.AsyncClient()
            cleanup.push_async_callback(http.aclose)
            table = LiveCatalog(config)
            refresher = CatalogRefresher(
                config, table, http, {token_env: token or catalog.token}, retry_after_failure_s=refresh_s
            )
            await refresher.start()
            cleanup.push_async_callback(refresher.stop)
            server = RouterServer(RouterServicer(table, state, refresher), "127.0.0.1:0")
            await server.start()
            cleanup.push_async_callback(server.stop, 0)
            address = f"127.0.0.1:{server.port}"
            channel = grpc.aio.insecure_channel(address)
            cleanup.push_async_callback(channel.close)
            stub = router_pb2_grpc.RouterStub(channel)
            return Running(catalog, address, stub, provider, token_env, f"static-{unique}")

        yield start


async def test_catalogue_is_fetched_at_start_with_the_oauth_header(start_router: StartRouter, unique: str) -> None:
    # A long refresh interval: whatever is served below came from the fetch at start.
    router = await start_router(refresh_s=3600)
    assert len(router.catalog.catalog_fetches) == 1
    assert router.catalog.catalog_fetches[0]["authorization"] == f"OAuth tok-{unique}"
    models = (await router.stub.ListModels(router_pb2.ListModelsRequest())).models
    owners = {m.id: m.owned_by for m in models}
    # the unmapped family is skipped; the static model stays
    assert owners == {f"static-{unique}": "fake", f"big-{unique}": router.provider, f"small-{unique}": router.provider}
    status = await router.status()
    assert status.provider == router.provider
    assert status.url == router.catalog.catalog_url.split("?")[0]
    assert (status.models, status.skipped, status.last_error, status.consecutive_failures) == (2, 1, "", 0)
    assert status.last_success == pytest.approx(time.time(), abs=30)


async def test_route_targets_the_handle_on_the_catalogue_host_with_the_family_adapter(
    start_router: StartRouter, unique: str
) -> None:
    router = await start_router(refresh_s=3600)
    big = (await router.route(f"big-{unique}")).target
    assert big == router_pb2.Target(
        deployment_id=f"{router.provider}/big-{unique}",
        provider="openai",
        upstream_model=f"big-{unique}",
        base_url=router.catalog.origin,
        api_key_env=router.token_env,
        price=router_pb2.Price(prompt_per_1k=0.3, completion_per_1k=1.2),
        timeout_s=7,
        options={AUTH_SCHEME_OPTION: "OAuth", ENDPOINT_OPTION: "/serving/big/v1"},
        model=f"big-{unique}",
    )
    small = (await router.route(f"small-{unique}")).target
    assert (small.provider, small.base_url) == ("fake", router.catalog.origin)
    assert small.options[ENDPOINT_OPTION] == "/serving/small/v1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.route(f"odd-{unique}")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # the catalogue deployment's outcomes feed health like any other deployment's
    ack = await router.stub.ReportOutcome(router_pb2.OutcomeReport(deployment_id=big.deployment_id, success=True))
    assert ack.healthy


async def test_a_refresh_picks_up_a_changed_list(start_router: StartRouter, unique: str) -> None:
    router = await start_router(refresh_s=0.2)
    router.catalog.serve([entry(f"small-{unique}", "tiny", "/moved/small"), entry(f"new-{unique}", "gpt", "/new")])
    expected = {f"static-{unique}", f"small-{unique}", f"new-{unique}"}
    await eventually(router.model_ids, lambda ids: ids == expected)
    assert (await router.route(f"small-{unique}")).target.options[ENDPOINT_OPTION] == "/moved/small"
    assert (await router.route(f"new-{unique}")).target.provider == "openai"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.route(f"big-{unique}")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await router.status()).models == 2


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda c: setattr(c, "failure", 503), "the catalogue answered HTTP 503"),
        (lambda c: c.serve_raw(b"<html>maintenance</html>"), "the catalogue is not JSON"),
        (lambda c: c.serve_raw(b'{"items": []}'), 'not an object with a "models" list'),
    ],
    ids=["http-503", "not-json", "not-a-catalogue"],
)
async def test_a_failing_refresh_keeps_the_last_good_list_and_reports_the_error(
    start_router: StartRouter, unique: str, break_it: Callable[[CatalogServer], None], error: str
) -> None:
    router = await start_router(refresh_s=0.2)
    good = await router.status()
    break_it(router.catalog)
    failed = await eventually(router.status, lambda s: s.consecutive_failures >= 2)
    assert error in failed.last_error
    assert failed.last_error_at >= good.last_success
    assert failed.last_success == good.last_success  # the time of the list still served
    assert failed.models == 2
    # still served: listed and routable
    assert {f"big-{unique}", f"small-{unique}"} <= await router.model_ids()
    assert (await router.route(f"big-{unique}")).target.deployment_id == f"{router.provider}/big-{unique}"

    router.catalog.serve([entry(f"big-{unique}", "gpt", "/serving/big/v1")])
    recovered = await eventually(router.status, lambda s: s.last_error == "")
    assert (recovered.models, recovered.consecutive_failures) == (1, 0)
    assert recovered.last_success > good.last_success
    assert recovered.last_error_at == 0


async def test_a_refused_token_is_reported_and_the_router_serves_without_the_catalogue(
    start_router: StartRouter, unique: str
) -> None:
    router = await start_router(refresh_s=3600, token="wrong-token")
    assert router.catalog.catalog_fetches[0]["authorization"] == "OAuth wrong-token"
    status = await router.status()
    assert status.last_error == "the catalogue answered HTTP 401"
    assert (status.models, status.last_success, status.consecutive_failures) == (0, 0, 1)
    assert await router.model_ids() == {f"static-{unique}"}
    assert (await router.route(f"static-{unique}")).target.deployment_id == f"static-{unique}"


async def test_a_catalogue_down_at_start_joins_when_it_comes_back(
    start_router: StartRouter, catalog: CatalogServer, unique: str
) -> None:
    catalog.failure = 503
    router = await start_router(refresh_s=0.2)
    first = await router.status()
    assert first.last_error == "the catalogue answered HTTP 503"
    assert await router.model_ids() == {f"static-{unique}"}
    catalog.failure = None
    await eventually(router.model_ids, lambda ids: f"big-{unique}" in ids)
    assert (await router.status()).last_error == ""


async def test_the_gateways_ready_details_show_the_catalogue_and_its_failure(
    start_router: StartRouter, nats_url: str, unique: str
) -> None:
    router = await start_router(refresh_s=0.2)
    nc = await nats.connect(nats_url)
    router_client = RouterClient(router.address)
    unused: Any = None  # /ready dispatches nothing
    gateway = Gateway(GatewaySettings(), Keyring(GatewaySettings(), []), router_client, unused, nc)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")
    try:

        async def ready() -> httpx.Response:
            return await http.get("/ready")

        healthy = await ready()
        assert healthy.status_code == 200
        [shown] = healthy.json()["details"]["catalogs"]
        assert shown["provider"] == router.provider
        assert shown["url"] == router.catalog.catalog_url.split("?")[0]
        assert (shown["models"], shown["skipped"], shown["last_error"], shown["last_error_at"]) == (2, 1, None, None)
        assert shown["last_success"].endswith("+00:00")

        router.catalog.failure = 503
        failing = await eventually(ready, lambda r: r.json()["details"]["catalogs"][0]["last_error"] is not None)
        # still ready: the router serves the last good list
        assert failing.status_code == 200
        assert failing.json()["status"] == "ready"
        [shown_failing] = failing.json()["details"]["catalogs"]
        assert shown_failing["last_error"] == "the catalogue answered HTTP 503"
        assert shown_failing["models"] == 2
        assert shown_failing["last_success"] == shown["last_success"]
        assert shown_failing["last_error_at"] >= shown["last_success"]
        assert shown_failing["consecutive_failures"] >= 1
    finally:
        await http.aclose()
        await router_client.close()
        await nc.close()
