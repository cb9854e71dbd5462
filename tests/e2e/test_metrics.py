"""Metrics through the four services as processes: every figure read with Prometheus's own text
parser, before and after requests this test makes.

- ``GET /metrics`` on the gateway: 401 without a key, 403 for a client key, 200 for an ops key and
  the master key; the same text without a key on the gateway's internal ``METRICS_PORT``; a JSON
  summary of usage and cost to ``Accept: application/json``.
- The gateway's counts by model, provider and status, its tokens and cost equal to the usage rows
  accounting stored for those requests, its refusals by reason (a deployment's rpm, a key's rpm, a
  key's budget) and its upstream errors by provider and kind.
- The internal ports of the router (decisions, refusals, Redis steps), the workers (upstream latency
  and errors) and accounting (events, inserts, lag) serve metrics that move with the same requests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import free_port
from tests.e2e.helpers import OwnStack, one_usage_row, own_stack

pytestmark = pytest.mark.e2e

MASTER = "sk-master-metrics-0123456789abcdef"
OPS = "sk-ops-metrics-0123456789abcdef"
HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config(u: str) -> str:
    return f"""
providers:
  fake: {{adapter: fake}}
  broken: {{adapter: fake, options: {{fail_status: "500"}}}}
  dying: {{adapter: fake, options: {{fail_after_chunks: "3", tokens_per_second: "200"}}}}
deployments:
  - {{id: priced-{u}, model: priced, provider: fake, upstream_model: fake-1,
      price: {{prompt_per_1k: 1.0, completion_per_1k: 2.0}}}}
  - {{id: limited-{u}, model: limited, provider: fake, rpm: 1}}
  - {{id: broken-{u}, model: broken, provider: broken}}
  - {{id: dying-{u}, model: dying, provider: dying}}
health:
  failure_threshold: 1000
  cooldown_s: 1
"""


class Running:
    def __init__(self, stack: OwnStack, gateway_metrics_port: int, router_health_port: int) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.base_url, timeout=30)
        ports = stack.stack.ports
        self.internal = {
            "gateway": gateway_metrics_port,
            "router": router_health_port,
            "workers": ports.workers_health,
            "accounting": ports.accounting_health,
        }

    def scrape(self, service: str) -> Samples:
        """The service's internal port, without a key."""
        response = httpx.get(f"http://127.0.0.1:{self.internal[service]}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(response.text)

    def chat(self, key: str, model: str, **body: Any) -> httpx.Response:
        return self.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": HELLO, "max_tokens": 20, **body},
        )

    def create_key(self, **fields: Any) -> str:
        response = self.http.post(
            "/admin/keys",
            headers={"Authorization": f"Bearer {MASTER}"},
            json={"name": f"metrics-{uuid.uuid4().hex[:6]}", **fields},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["key"])


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def eventually(read: Callable[[], Samples], ok: Callable[[Samples], bool], timeout: float = 15.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = read()
        if ok(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


@pytest.fixture(scope="module")
def running(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    u = uuid.uuid4().hex[:8]
    metrics_port, router_health = free_port(), free_port()
    with own_stack(
        config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("metrics")),
        env={
            "MODELROUTER_MASTER_KEY": MASTER,
            "API_KEYS": OPS,
            "METRICS_PORT": str(metrics_port),  # the gateway's internal port
            "HEALTH_PORT": str(router_health),  # the router's (workers and accounting get their own)
        },
    ) as stack:
        yield Running(stack, metrics_port, router_health)


def test_the_public_route_answers_ops_and_master_keys_only(running: Running) -> None:
    client_key = running.create_key()
    assert running.http.get("/metrics").status_code == 401
    refused = running.http.get("/metrics", headers={"Authorization": f"Bearer {client_key}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    for key in (OPS, MASTER):
        answer = running.http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        families = {f.name for f in text_string_to_metric_families(answer.text)}
        assert {"modelrouter_gateway_requests", "modelrouter_gateway_cost_usd", "process_cpu_seconds"} <= families


def test_requests_tokens_and_cost_equal_the_usage_accounting_stored(running: Running) -> None:
    gateway, workers, router = running.scrape("gateway"), running.scrape("workers"), running.scrape("router")
    ids = [
        running.chat(OPS, "priced").headers["x-request-id"],
        running.chat(OPS, "priced").headers["x-request-id"],
    ]
    streamed = running.chat(OPS, "priced", stream=True, stream_options={"include_usage": True})
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    ids.append(streamed.headers["x-request-id"])
    rows = [asyncio.run(one_usage_row(running.stack.database_url, request_id)) for request_id in ids]

    after = running.scrape("gateway")
    labels = {"model": "priced", "provider": "fake"}
    assert delta(gateway, after, "modelrouter_gateway_requests_total", **labels, status="200") == 3
    prompt = delta(gateway, after, "modelrouter_gateway_tokens_total", **labels, type="prompt")
    completion = delta(gateway, after, "modelrouter_gateway_tokens_total", **labels, type="completion")
    assert prompt == sum(row["prompt_tokens"] for row in rows) > 0
    assert completion == sum(row["completion_tokens"] for row in rows) > 0
    stored_cost = sum((Decimal(row["cost_usd"]) for row in rows), Decimal(0))
    assert stored_cost > 0
    assert delta(gateway, after, "modelrouter_gateway_cost_usd_total", **labels) == pytest.approx(
        float(stored_cost), rel=1e-9
    )
    assert delta(gateway, after, "modelrouter_gateway_request_duration_seconds_count", **labels) == 3
    assert delta(gateway, after, "modelrouter_gateway_time_to_first_token_seconds_count", **labels) == 1
    assert after[("modelrouter_gateway_requests_in_flight", frozenset())] == 0

    # The same requests as the router decided them and the workers served them.
    router_after = running.scrape("router")
    assert delta(router, router_after, "modelrouter_router_decisions_total", outcome="routed") >= 3
    assert delta(router, router_after, "modelrouter_router_redis_seconds_count", step="route") >= 3
    workers_after = running.scrape("workers")
    assert delta(workers, workers_after, "modelrouter_worker_jobs_total", provider="fake", outcome="ok") >= 3
    assert delta(workers, workers_after, "modelrouter_worker_upstream_duration_seconds_count", provider="fake") >= 3
    assert workers_after[("modelrouter_worker_jobs_in_flight", frozenset())] == 0


def test_refusals_are_counted_by_the_limit_that_made_them(running: Running) -> None:
    gateway, router = running.scrape("gateway"), running.scrape("router")
    # A deployment's rpm: the model's one deployment takes one request a minute.
    statuses = [running.chat(OPS, "limited").status_code for _ in range(2)]
    assert statuses == [200, 429]
    # A key's rpm, and a key's budget too small for any request.
    rated = running.create_key(rpm=1)
    assert [running.chat(rated, "priced").status_code for _ in range(2)] == [200, 429]
    broke = running.create_key(daily_budget_usd=0.000001)
    refused = running.chat(broke, "priced")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"

    after = running.scrape("gateway")
    for reason in ("deployment_rate_limit", "key_rate_limit", "budget"):
        assert delta(gateway, after, "modelrouter_gateway_refusals_total", reason=reason) == 1, reason
    assert delta(gateway, after, "modelrouter_gateway_requests_total", model="limited", provider="", status="429") == 1
    assert delta(gateway, after, "modelrouter_gateway_requests_total", model="priced", provider="", status="429") == 2
    router_after = running.scrape("router")
    for reason in ("deployment_rate_limit", "key_rate_limit", "budget"):
        assert delta(router, router_after, "modelrouter_router_refusals_total", reason=reason) == 1, reason
    assert delta(router, router_after, "modelrouter_router_decisions_total", outcome="refused") == 3
    assert delta(router, router_after, "modelrouter_router_redis_seconds_count", step="admit") >= 3


def test_an_upstream_error_is_counted_by_provider_and_kind(running: Running) -> None:
    gateway, workers = running.scrape("gateway"), running.scrape("workers")
    # The deployment's provider runs the fake adapter: ``provider`` is the adapter's name, as in usage rows.
    failed = running.chat(OPS, "broken")
    assert failed.status_code == 502
    after = running.scrape("gateway")
    assert delta(gateway, after, "modelrouter_gateway_upstream_errors_total", provider="fake", kind="error") == 1
    assert (
        delta(gateway, after, "modelrouter_gateway_requests_total", model="broken", provider="fake", status="502") == 1
    )
    workers_after = running.scrape("workers")
    assert delta(workers, workers_after, "modelrouter_worker_upstream_errors_total", provider="fake", kind="error") == 1
    assert delta(workers, workers_after, "modelrouter_worker_jobs_total", provider="fake", outcome="error") == 1


def test_a_stream_that_fails_after_its_first_chunks_is_counted_once_as_an_upstream_error(running: Running) -> None:
    gateway = running.scrape("gateway")
    stream = running.chat(OPS, "dying", stream=True)
    # The status went out with the first chunk; the failure ends the stream in band.
    assert stream.status_code == 200 and '"error"' in stream.text and "[DONE]" not in stream.text
    after = running.scrape("gateway")
    assert delta(gateway, after, "modelrouter_gateway_upstream_errors_total", provider="fake", kind="error") == 1
    # Its usage record says 502, and so does the request's series; it streamed, so it has a TTFT.
    labels = {"model": "dying", "provider": "fake"}
    assert delta(gateway, after, "modelrouter_gateway_requests_total", **labels, status="502") == 1
    assert delta(gateway, after, "modelrouter_gateway_time_to_first_token_seconds_count", **labels) == 1


def test_accountings_port_counts_the_events_it_stores(running: Running) -> None:
    before = running.scrape("accounting")
    request_id = running.chat(OPS, "priced").headers["x-request-id"]
    asyncio.run(one_usage_row(running.stack.database_url, request_id))
    stored = "modelrouter_accounting_events_total"
    after = eventually(lambda: running.scrape("accounting"), lambda s: delta(before, s, stored, outcome="stored") >= 1)
    assert delta(before, after, stored, outcome="stored") >= 1
    assert delta(before, after, "modelrouter_accounting_batch_rows_count") >= 1
    assert delta(before, after, "modelrouter_accounting_insert_seconds_count", result="ok") >= 1
    # Sampled every few seconds from the server's consumer info: present, and caught up.
    lag = eventually(
        lambda: running.scrape("accounting"),
        lambda s: s.get(("modelrouter_accounting_consumer_pending", frozenset()), -1) == 0,
    )
    assert lag[("modelrouter_accounting_consumer_pending", frozenset())] == 0


def test_the_json_summary_and_the_internal_port_agree_with_the_public_text(running: Running) -> None:
    running.chat(OPS, "priced")
    summary = running.http.get("/metrics", headers={"Authorization": f"Bearer {OPS}", "Accept": "application/json"})
    assert summary.status_code == 200 and summary.headers["content-type"] == "application/json"
    body = summary.json()
    public = parse(running.http.get("/metrics", headers={"Authorization": f"Bearer {MASTER}"}).text)
    internal = running.scrape("gateway")
    served = {
        dict(labels)["status"]: v
        for (name, labels), v in internal.items()
        if name == "modelrouter_gateway_requests_total" and dict(labels)["model"] == "priced"
    }
    priced = [row for row in body["by_model"] if row["model"] == "priced" and row["provider"] == "fake"]
    assert priced and priced[0]["requests"] == served["200"]
    labels = frozenset({("model", "priced"), ("provider", "fake")})
    assert priced[0]["cost_usd"] == pytest.approx(internal[("modelrouter_gateway_cost_usd_total", labels)], rel=1e-9)
    assert body["total_requests"] == sum(
        v for (name, _), v in internal.items() if name == "modelrouter_gateway_requests_total"
    )
    # One registry behind both doors.
    assert public[("modelrouter_gateway_requests_total", frozenset({*labels, ("status", "200")}))] == served["200"]
