"""``GET /metrics`` on the gateway's public application: who may read it (401 without a key, 403 for a
client key, 200 for an ops key and the master key, seed 004's way of sending it), Prometheus text by
default (parsed by prometheus-client's parser, moving with what is recorded), and the JSON summary
to a client that asks for ``application/json``, from the function the application was built with."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from common.settings import GatewaySettings
from gateway.admission import billed
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.keyring import Keyring, digest
from gateway.metrics import GatewayMetrics
from gateway.routes.metrics import MetricsSummary, wants_json
from modelrouter.events.v1 import events_pb2
from modelrouter.keys.v1 import keys_pb2

OPS = "sk-ops-key-0123456789"
MASTER = "sk-master-key-0123456789"
CLIENT = "sk-mr-client-secret-0123456789abcdef"


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


def gateway_with(metrics: GatewayMetrics) -> Gateway:
    settings = GatewaySettings(api_keys=OPS, modelrouter_master_key=SecretStr(MASTER))
    keys = Keyring(settings, [])
    keys.put_key(
        keys_pb2.KeyRecord(
            id="key_client", name="app", digest=digest(CLIENT).hex(), display="sk-mr-…cdef", role="client"
        )
    )
    unused: Any = None  # the route reads only the dispatcher's metrics
    dispatcher: Any = SimpleNamespace(metrics=metrics)
    return Gateway(settings, keys, unused, dispatcher, unused)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def served(metrics: GatewayMetrics) -> None:
    event = events_pb2.UsageEvent(
        requested_model="demo",
        provider="fake",
        http_status=200,
        latency_ms=12,
        usage=events_pb2.Usage(prompt_tokens=5, completion_tokens=3),
    )
    metrics.started()
    metrics.finished(event, None, billed(event))


def requests_of(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelrouter_gateway_requests_total" and sample.labels["status"] == "200":
                return sample.value
    return 0.0


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Bearer sk-nobody-0123456789"}, 401, "invalid_api_key"),
        ({"Authorization": f"Bearer {CLIENT}"}, 403, "ops_key_required"),
        ({"X-Api-Key": CLIENT}, 403, "ops_key_required"),
    ],
)
async def test_only_an_ops_key_or_the_master_key_may_read_it(
    metrics: GatewayMetrics, headers: dict[str, str], status: int, code: str
) -> None:
    async with client_for(create_app(gateway_with(metrics))) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {OPS}"}, {"Authorization": f"Bearer {MASTER}"}])
async def test_the_text_moves_with_the_requests_served(metrics: GatewayMetrics, headers: dict[str, str]) -> None:
    async with client_for(create_app(gateway_with(metrics))) as client:
        before = await client.get("/metrics", headers=headers)
        served(metrics)
        served(metrics)
        after = await client.get("/metrics", headers=headers)
    assert before.status_code == after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert requests_of(before.text) == 0
    assert requests_of(after.text) == 2


async def test_a_scraper_asking_for_openmetrics_gets_it(metrics: GatewayMetrics) -> None:
    served(metrics)
    async with client_for(create_app(gateway_with(metrics))) as client:
        response = await client.get(
            "/metrics",
            headers={"Authorization": f"Bearer {OPS}", "Accept": "application/openmetrics-text; version=1.0.0"},
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_a_client_asking_for_json_gets_the_summary_of_usage_and_cost(metrics: GatewayMetrics) -> None:
    served(metrics)
    async with client_for(create_app(gateway_with(metrics))) as client:
        response = await client.get(
            "/metrics", headers={"Authorization": f"Bearer {OPS}", "Accept": "application/json"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = MetricsSummary.model_validate(response.json())  # the documented shape
    assert body.total_requests == 1 and body.prompt_tokens == 5 and body.completion_tokens == 3
    assert [(m.model, m.provider, m.requests) for m in body.by_model] == [("demo", "fake", 1)]


async def test_the_json_summary_comes_from_the_function_the_application_was_built_with(
    metrics: GatewayMetrics,
) -> None:
    calls: list[int] = []

    async def cluster_summary() -> dict[str, Any]:
        calls.append(1)
        return {"total_requests": 12345, "total_cost_usd": 6.5}

    app = create_app(gateway_with(metrics), usage_summary=cluster_summary)
    async with client_for(app) as client:
        as_json = await client.get(
            "/metrics", headers={"Authorization": f"Bearer {MASTER}", "Accept": "application/json"}
        )
        as_text = await client.get("/metrics", headers={"Authorization": f"Bearer {MASTER}"})
    assert as_json.json() == {"total_requests": 12345, "total_cost_usd": 6.5}
    assert as_text.headers["content-type"].startswith("text/plain")
    assert calls == [1]


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        ("application/json", True),
        ("text/html, application/json;q=0.9", True),
        ("Application/JSON", True),
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("application/openmetrics-text", False),
        ("application/jsonl", False),
    ],
)
def test_what_counts_as_asking_for_json(accept: str, json: bool) -> None:
    assert wants_json(accept) is json
