"""The Grafana dashboard (``deploy/grafana/modelrouter.json``) reads only series the services expose:
every metric name in every query is a sample name of the metrics the four services register (or of
prometheus-client's process collector), every label it filters or groups by is one those series
carry, each service's metrics appear in some panel, and the panels do not overlap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accounting.metrics import AccountingMetrics
from common.errors import RateLimitError, UpstreamError
from gateway.admission import billed
from gateway.metrics import GatewayMetrics
from gateway.router_client import KeyRateLimitError
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from router.metrics import RouterMetrics
from tests.deploy.dockerfile_model import REPO
from workers.metrics import WorkerMetrics

pytestmark = pytest.mark.deploy

DASHBOARD = REPO / "deploy" / "grafana" / "modelrouter.json"
_METRIC = re.compile(r"\b((?:modelrouter|process)_[a-z_]+)\b")
_MATCHER = re.compile(r"\b([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|on)\s*\(([^)]*)\)")
# Labels Prometheus adds at scrape time, and a histogram's bucket bound.
_SCRAPE_LABELS = {"instance", "job", "le"}


def exposed() -> dict[str, set[str]]:
    """Every sample name the services' metrics produce, with its labels: each metric object made to
    record once (a labelled family shows no sample before its first child), then read back through
    Prometheus's text parser, with prometheus-client's process collector beside them."""
    registry = CollectorRegistry()
    gateway = GatewayMetrics(registry)
    gateway.started()
    refused = events_pb2.UsageEvent(
        requested_model="m",
        provider="p",
        http_status=429,
        latency_ms=1,
        ttft_ms=1,
        usage=events_pb2.Usage(prompt_tokens=1, completion_tokens=1),
        price=router_pb2.Price(prompt_per_1k=1, completion_per_1k=1),
    )
    gateway.finished(refused, KeyRateLimitError("limit"), billed(refused))
    gateway.upstream_error("p", UpstreamError("boom"))
    router = RouterMetrics(registry)

    async def refuse(request: router_pb2.RouteRequest, settlements: object = ()) -> router_pb2.RouteResponse:
        raise RateLimitError("limit")

    with contextlib.suppress(RateLimitError):
        asyncio.run(router.counted(refuse)(router_pb2.RouteRequest()))
    with router.redis("route"):
        pass
    workers = WorkerMetrics(registry)
    workers.started()
    workers.finished("p", 0.1, events_pb2.Result(ok=False, error=events_pb2.Error(status=504)))
    accounting = AccountingMetrics(registry)
    accounting.inserted(1, 0.01, "ok")
    accounting.events["stored"].inc()
    ProcessCollector(registry=registry)
    return {
        sample.name: set(sample.labels)
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["name"], variable["definition"]


def test_every_query_reads_series_and_labels_the_services_expose() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exposed()
    for title, expr in queries(dashboard):
        used = _METRIC.findall(expr)
        assert used, f"{title}: {expr} reads no ModelRouter series"
        for name in used:
            assert name in names, f"{title}: {name} is not a series any service exposes"
        carried = set().union(*(names[n] for n in used)) | _SCRAPE_LABELS
        grouped = {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}
        for label in set(_MATCHER.findall(expr)) | grouped:
            assert label in carried, f"{title}: no series it reads carries the label {label!r}"


def test_each_service_has_panels() -> None:
    text = " ".join(expr for _, expr in queries(json.loads(DASHBOARD.read_text())))
    for prefix in ("modelrouter_gateway_", "modelrouter_router_", "modelrouter_worker_", "modelrouter_accounting_"):
        assert prefix in text, prefix
    for metric in (
        "modelrouter_gateway_requests_total",
        "modelrouter_gateway_request_duration_seconds_bucket",
        "modelrouter_gateway_time_to_first_token_seconds_bucket",
        "modelrouter_gateway_tokens_total",
        "modelrouter_gateway_cost_usd_total",
        "modelrouter_gateway_requests_in_flight",
        "modelrouter_gateway_refusals_total",
        "modelrouter_gateway_upstream_errors_total",
        "modelrouter_router_decisions_total",
        "modelrouter_router_refusals_total",
        "modelrouter_router_redis_seconds_bucket",
        "modelrouter_worker_upstream_duration_seconds_bucket",
        "modelrouter_worker_upstream_errors_total",
        "modelrouter_worker_jobs_in_flight",
        "modelrouter_accounting_events_total",
        "modelrouter_accounting_batch_rows_sum",
        "modelrouter_accounting_insert_seconds_bucket",
        "modelrouter_accounting_redeliveries_total",
        "modelrouter_accounting_consumer_pending",
    ):
        assert metric in text, f"no panel shows {metric}"


def test_panels_have_unique_ids_a_datasource_variable_and_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dashboard["templating"]["list"])
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
