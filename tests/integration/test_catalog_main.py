"""``python -m router`` with a remote catalogue: a catalogue that cannot be fetched at start does not
stop the router; its models join once it answers, with the token read from the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from tests.integration.catalog_server import CatalogServer, entry
from tests.integration.test_catalog_router import eventually

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def catalog(unique: str) -> Iterator[CatalogServer]:
    server = CatalogServer(token=f"tok-{unique}", models=[entry(f"remote-{unique}", "gpt", "/remote/v1")])
    server.start()
    yield server
    server.stop()


async def test_router_starts_without_its_catalogue_and_picks_it_up_later(
    tmp_path: Path, unique: str, redis_url: str, catalog: CatalogServer
) -> None:
    token_env = f"MR_TEST_CATALOG_TOKEN_{unique}"
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "fake": {"adapter": "fake"},
                    "cloud": {
                        "catalog": {
                            "url": catalog.catalog_url,
                            "refresh_s": 0.3,
                            "token_env": token_env,
                            "families": {"gpt": "openai"},
                        }
                    },
                },
                "deployments": [{"id": f"{unique}-only", "model": f"m-{unique}", "provider": "fake"}],
            }
        )
    )
    catalog.failure = 500  # down at start
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "MODELROUTER_CONFIG": str(config),
        "REDIS_URL": redis_url,
        "ROUTER_LISTEN": address,
        "DRAIN_TIMEOUT_S": "2",
        token_env: f"tok-{unique}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=20, wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = router_pb2_grpc.RouterStub(channel)
            [status] = (await stub.Status(router_pb2.StatusRequest(), timeout=5)).catalogs
            assert (status.provider, status.last_error, status.models) == (
                "cloud",
                "the catalogue answered HTTP 500",
                0,
            )
            routed = await stub.Route(router_pb2.RouteRequest(model=f"m-{unique}"), timeout=5)
            assert routed.target.deployment_id == f"{unique}-only"

            catalog.failure = None

            async def model_ids() -> set[str]:
                return {m.id for m in (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models}

            await eventually(model_ids, lambda ids: f"remote-{unique}" in ids)
            remote = (await stub.Route(router_pb2.RouteRequest(model=f"remote-{unique}"), timeout=5)).target
            assert (remote.base_url, remote.options["endpoint"]) == (catalog.origin, "/remote/v1")
            assert all(f["authorization"] == f"OAuth tok-{unique}" for f in catalog.catalog_fetches)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, stderr.decode()
        log = stderr.decode()
        assert "catalogue of cloud: fetch failed: the catalogue answered HTTP 500; no list yet" in log
        assert "catalogue of cloud: serving 1 models" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
