"""Fixtures integration tests share: a migrated database and a private usage lane (accounting); a
router server on an ephemeral port over the real Redis, with a client channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc.aio
import pytest
import yaml
from grpc_health.v1 import health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from common.config import parse_config
from modelrouter.router.v1 import router_pb2_grpc
from router.selection import Catalog
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from tests.integration.test_accounting_consumer import Lane, migrate


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def lane(nc: NATS, unique: str) -> AsyncIterator[Lane]:
    lane = Lane(nc.jetstream(), unique)
    await lane.js.add_stream(StreamConfig(name=lane.stream, subjects=[lane.subject], duplicate_window=120))
    yield lane
    await lane.js.delete_stream(lane.stream)


@dataclass
class RunningRouter:
    server: RouterServer
    stub: router_pb2_grpc.RouterStub
    health: health_pb2_grpc.HealthStub
    spans: InMemorySpanExporter
    model: str
    tiny_model: str  # rpm 1 on its only deployment
    ids: list[str]  # the deployments of `model`, in priority order

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


def config_yaml(unique: str) -> str:
    return yaml.safe_dump(
        {
            "providers": {
                "demo": {"adapter": "fake", "base_url": "http://fake.local/v1", "options": {"x": "1"}},
                "up": {"adapter": "openai", "base_url": "https://up.example/v1", "api_key_env": "UP_KEY"},
            },
            "deployments": [
                {"id": f"{unique}-backup", "model": f"chat-{unique}", "provider": "up", "priority": 5},
                {
                    "id": f"{unique}-main",
                    "model": f"chat-{unique}",
                    "provider": "demo",
                    "upstream_model": "fake-1",
                    "timeout_s": 9,
                    "price": {"prompt_per_1k": 0.5, "completion_per_1k": 1.5},
                },
                {"id": f"{unique}-tiny", "model": f"tiny-{unique}", "provider": "demo", "rpm": 1},
            ],
            "health": {"failure_threshold": 2, "cooldown_s": 30},
        }
    )


@pytest.fixture
async def redis(redis_url: str, unique: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"mr:test:{unique}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def router(redis: Redis, unique: str) -> AsyncIterator[RunningRouter]:
    config = parse_config(config_yaml(unique))
    state = RouterState(redis, config.health, key_prefix=f"mr:test:{unique}:")
    await state.load_scripts()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    server = RouterServer(
        RouterServicer(Catalog.from_config(config), state), "127.0.0.1:0", tracer_provider=tracer_provider
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningRouter(
            server=server,
            stub=router_pb2_grpc.RouterStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
            spans=spans,
            model=f"chat-{unique}",
            tiny_model=f"tiny-{unique}",
            ids=[f"{unique}-main", f"{unique}-backup"],
        )
    finally:
        await channel.close()
        await server.stop(0)
