"""``python -m router`` as a process: refuses to start without Redis, drains and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelrouter.router.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def router_env(tmp_path: Path, unique: str, redis_url: str, listen: str) -> dict[str, str]:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"providers: {{p: {{adapter: fake}}}}\ndeployments: [{{id: {unique}-only, model: m-{unique}, provider: p}}]\n"
    )
    return {
        **os.environ,
        "MODELROUTER_CONFIG": str(config),
        "REDIS_URL": redis_url,
        "ROUTER_LISTEN": listen,
        "DRAIN_TIMEOUT_S": "2",
    }


async def test_exits_1_naming_redis_when_it_is_unreachable(tmp_path: Path, unique: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        env=router_env(tmp_path, unique, dead_redis, f"127.0.0.1:{free_port()}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    assert f"redis at {dead_redis} is not reachable" in stderr.decode()


async def test_serves_then_drains_and_exits_0_on_sigterm(tmp_path: Path, unique: str, redis_url: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        env=router_env(tmp_path, unique, redis_url, address),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            # wait_for_ready holds the call until the process listens.
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=20, wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            routed = await router_pb2_grpc.RouterStub(channel).Route(
                router_pb2.RouteRequest(model=f"m-{unique}"), timeout=5
            )
            assert routed.target.deployment_id == f"{unique}-only"
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, stderr.decode()
        assert "draining" in stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
