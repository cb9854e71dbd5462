"""The operator's endpoints through the gateway's HTTP app and the real RouterClient, against a real
grpc.aio server whose Overview the test sets: who may read them (401 without a key, 403 for a client
key, OpenAI-shaped), what they answer, which keys they ask about, and a router that fails (503, never
a 500)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from pydantic import SecretStr

from common.settings import GatewaySettings
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.keyring import Keyring
from gateway.router_client import RouterClient
from modelrouter.keys.v1 import keys_pb2
from modelrouter.router.v1 import router_pb2
from tests.integration.recording_router import RecordingRouter, RunningRecordingRouter, recording_router

pytestmark = pytest.mark.integration

OPS = "sk-operator-ops-key-0001"
MASTER = "sk-operator-master-key-0001"
CLIENT = "sk-mr-operator-client-0001"
LIMITED = "sk-mr-operator-limited-0001"
OPS_ENDPOINTS = ("/router/stats", "/router/health", "/router/rate-limits", "/providers")

OVERVIEW = router_pb2.OverviewResponse(
    deployments=[
        router_pb2.DeploymentOverview(
            deployment_id="fake-demo",
            model="demo",
            provider="fake",
            upstream_model="demo-upstream",
            strategy="priority",
            requests=4,
            successes=3,
            failures=1,
            avg_latency_ms=12.5,
            in_flight=1,
            traffic_share=1.0,
            healthy=True,
            requests_limit=router_pb2.LimitState(limit=60, remaining=56, reset_ms=30_000),
        ),
        router_pb2.DeploymentOverview(
            deployment_id="openai-mini",
            model="gpt-4o-mini",
            provider="openai",
            strategy="cost",
            healthy=False,
            ejected_until=4_102_444_800,  # 2100-01-01
            consecutive_failures=5,
        ),
    ],
    keys=[router_pb2.KeyOverview(key_id="key_limited", requests=router_pb2.LimitState(used=3))],
)


def _record(kid: str, secret: str, **fields: Any) -> keys_pb2.KeyRecord:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return keys_pb2.KeyRecord(id=kid, name=kid, digest=digest, display=f"sk-mr-…{secret[-4:]}", **fields)


@pytest.fixture
async def router() -> AsyncIterator[RunningRecordingRouter]:
    catalog = router_pb2.CatalogStatus(provider="cloud", url="https://models.example.com/m.json")
    async with recording_router(RecordingRouter(overview=OVERVIEW, catalogs=[catalog])) as running:
        yield running


@pytest.fixture
async def client(router: RunningRecordingRouter) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(api_keys=OPS, modelrouter_master_key=SecretStr(MASTER))
    keys = Keyring(settings, [], environ={})
    keys.put_key(_record("key_client", CLIENT))
    keys.put_key(_record("key_limited", LIMITED, limits=keys_pb2.Limits(rpm=10)))
    router_client = RouterClient(router.address)
    unused: Any = None  # these endpoints dispatch nothing
    gateway = Gateway(settings, keys, router_client, unused, unused)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw") as http:
        yield http
    await router_client.close()


def _as(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("path", OPS_ENDPOINTS)
async def test_ops_endpoints_need_an_ops_or_master_key(client: httpx.AsyncClient, path: str) -> None:
    assert _error(await client.get(path), 401)["code"] == "missing_api_key"
    assert _error(await client.get(path, headers=_as("sk-wrong-000000000000")), 401)["code"] == "invalid_api_key"
    refused = _error(await client.get(path, headers=_as(CLIENT)), 403)
    assert (refused["type"], refused["code"]) == ("permission_error", "ops_key_required")
    assert (await client.get(path, headers=_as(OPS))).status_code == 200
    assert (await client.get(path, headers={"x-api-key": MASTER})).status_code == 200


async def test_router_stats(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/router/stats", headers=_as(OPS))).json()
    assert stats["object"] == "router.stats"
    first = stats["deployments"][0]
    assert (first["deployment_id"], first["requests"], first["successes"], first["failures"]) == ("fake-demo", 4, 3, 1)
    assert (first["avg_latency_ms"], first["avg_ttft_ms"], first["in_flight"], first["traffic_share"]) == (
        12.5,
        None,
        1,
        1.0,
    )
    assert stats["totals"] == {"requests": 4, "successes": 3, "failures": 1, "in_flight": 1}


async def test_router_health(client: httpx.AsyncClient) -> None:
    health = (await client.get("/router/health", headers=_as(OPS))).json()
    ejected = health["deployments"][1]
    assert (ejected["deployment_id"], ejected["healthy"]) == ("openai-mini", False)
    assert ejected["ejected_until"] == "2100-01-01T00:00:00Z"
    assert ejected["consecutive_failures"] == 5
    assert (health["status"], health["healthy"], health["unhealthy"]) == ("degraded", 1, 1)


async def test_rate_limits_ask_the_router_about_every_key_the_gateway_knows(
    client: httpx.AsyncClient, router: RunningRecordingRouter
) -> None:
    limits = (await client.get("/router/rate-limits", headers=_as(OPS))).json()
    [asked] = router.servicer.overview_requests
    # Only the keys with a rate limit: the router counts their use, the keyring knows their limits.
    assert list(asked.key_ids) == ["key_limited"]
    assert limits["deployments"][0]["requests"]["used"] == 4
    assert limits["deployments"][1]["requests"] is None
    assert limits["keys"] == [
        {
            "key_id": "key_limited",
            "key": f"sk-mr-…{LIMITED[-4:]}",
            "requests": {
                "limit": 10,
                "used": 3,
                "remaining": 7,
                "reset": "0ms",
                "reset_at": limits["keys"][0]["requests"]["reset_at"],
            },
            "tokens": None,
        }
    ]
    for secret in (OPS, MASTER, CLIENT, LIMITED):
        assert secret not in str(limits)


async def test_providers(client: httpx.AsyncClient) -> None:
    providers = (await client.get("/providers", headers=_as(OPS))).json()
    assert [(p["name"], p["available"], p["models"]) for p in providers["providers"]] == [
        ("cloud", False, []),
        ("fake", True, ["demo"]),
        ("openai", False, ["gpt-4o-mini"]),
    ]


async def test_root_and_backend_info_answer_without_a_key_as_in_seed_001(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 200
    assert root.json()["name"] == "ModelRouter" and root.json()["version"]
    assert root.json()["backends"] == {"total": 2, "healthy": 1, "unhealthy": 1, "providers": 2, "models": 2}
    anonymous = (await client.get("/backend/info")).json()
    assert anonymous["summary"] == root.json()["backends"] and anonymous["backends"] is None
    assert (await client.get("/backend/info", headers=_as(CLIENT))).json()["backends"] is None
    detailed = (await client.get("/backend/info", headers=_as(OPS))).json()
    assert [(b["name"], b["backend_type"], b["healthy"]) for b in detailed["backends"]] == [
        ("fake-demo", "fake", True),
        ("openai-mini", "openai", False),
    ]
    assert _error(await client.get("/backend/info", headers=_as("sk-wrong-000000000000")), 401)


@pytest.mark.parametrize("path", [*OPS_ENDPOINTS, "/", "/backend/info"])
async def test_a_failing_router_is_a_503_never_a_500(
    client: httpx.AsyncClient, router: RunningRecordingRouter, path: str
) -> None:
    router.servicer.overview_error = grpc.StatusCode.INTERNAL
    error = _error(await client.get(path, headers=_as(OPS)), 503)
    assert error["type"] and error["code"] == "router_unavailable"
