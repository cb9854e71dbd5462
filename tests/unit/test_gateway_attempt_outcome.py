"""What the gateway reports to the router per attempt: nothing new for targets that do not ask
(priority's hot path), every outcome with latency and TTFT for those that do, and the worker's error
code and the upstream's Retry-After for failures that blame the deployment."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import (
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    WorkerLostError,
    error_for_upstream_status,
)
from gateway import attempt_outcome
from gateway.ledger import Ledger
from modelrouter.router.v1 import router_pb2


class Router:
    def __init__(self) -> None:
        self.reports: list[tuple[Any, ...]] = []

    def report(
        self, deployment_id: str, success: bool, status_code: int = 0, retry_after_s: float = 0, **measured: Any
    ) -> None:
        self.reports.append((deployment_id, success, status_code, retry_after_s, measured))


def started(target: router_pb2.Target, at: float = 100.0) -> Ledger:
    ledger = Ledger(target=target)
    attempt_outcome.attempt_started(ledger, target)
    ledger.attempt_started = at
    return ledger


PRIORITY = router_pb2.Target(deployment_id="p")
MEASURED = router_pb2.Target(deployment_id="m", report_outcome=True)


def test_a_priority_target_costs_no_report_when_it_serves() -> None:
    router = Router()
    ledger = started(PRIORITY)
    attempt_outcome.report_served(router, PRIORITY)  # type: ignore[arg-type]
    attempt_outcome.report_finished(router, ledger, 101.0)  # type: ignore[arg-type]
    assert router.reports == []


def test_a_priority_target_after_failures_reports_its_recovery() -> None:
    router = Router()
    recovering = router_pb2.Target(deployment_id="p", recent_failures=2)
    attempt_outcome.report_served(router, recovering)  # type: ignore[arg-type]
    assert router.reports == [("p", True, 0, 0, {})]


def test_a_measured_target_reports_its_latency_and_ttft_when_the_request_ends() -> None:
    router = Router()
    ledger = started(MEASURED)
    attempt_outcome.report_served(router, MEASURED)  # type: ignore[arg-type]
    assert router.reports == []  # not yet: its in-flight count lasts until the end of the stream
    ledger.first_byte_at = 100.25
    attempt_outcome.report_finished(router, ledger, 101.5)  # type: ignore[arg-type]
    attempt_outcome.report_finished(router, ledger, 102.0)  # type: ignore[arg-type]  (once only)
    [(dep, success, _, _, measured)] = router.reports
    assert (dep, success) == ("m", True)
    assert measured["latency_ms"] == pytest.approx(1500) and measured["ttft_ms"] == pytest.approx(250)


@pytest.mark.parametrize("target", [PRIORITY, MEASURED])
def test_a_failure_that_blames_the_deployment_is_reported_with_its_retry_after(target: router_pb2.Target) -> None:
    router = Router()
    ledger = started(target)
    error = UpstreamRateLimitError("slow down", upstream_status=429, retry_after_s=7)
    attempt_outcome.report_failed_attempt(router, ledger, target, error)  # type: ignore[arg-type]
    attempt_outcome.report_finished(router, ledger, 101.0)  # type: ignore[arg-type]  (already reported)
    assert router.reports == [(target.deployment_id, False, 429, 7, {"error_code": "rate_limit_exceeded"})]


def test_a_quota_that_is_gone_is_reported() -> None:
    router = Router()
    for error in (
        error_for_upstream_status(402)("no credit", upstream_status=402),
        UpstreamRateLimitError("quota", upstream_status=429, code="insufficient_quota"),
    ):
        attempt_outcome.report_failed_attempt(router, started(PRIORITY), PRIORITY, error)  # type: ignore[arg-type]
    assert [(r[1], r[2], r[4]["error_code"]) for r in router.reports] == [
        (False, 402, "upstream_error"),
        (False, 429, "insufficient_quota"),
    ]


@pytest.mark.parametrize(
    "error", [UpstreamBadRequestError("bad request", upstream_status=400), WorkerLostError("gone")]
)
def test_what_is_not_the_deployments_fault_only_ends_a_measured_attempt(error: UpstreamError) -> None:
    router = Router()
    attempt_outcome.report_failed_attempt(router, started(PRIORITY), PRIORITY, error)  # type: ignore[arg-type]
    assert router.reports == []
    attempt_outcome.report_failed_attempt(router, started(MEASURED), MEASURED, error)  # type: ignore[arg-type]
    assert router.reports == [("m", True, 0, 0, {})]


def test_a_cancelled_or_mid_stream_failed_measured_request_still_ends_its_count() -> None:
    router = Router()
    cancelled = started(MEASURED)
    cancelled.cancelled = True
    attempt_outcome.report_finished(router, cancelled, 101.0)  # type: ignore[arg-type]
    stalled = started(MEASURED)
    stalled.error = error_for_upstream_status(504)("stalled", upstream_status=0)
    attempt_outcome.report_finished(router, stalled, 101.0)  # type: ignore[arg-type]
    assert [(r[1], r[2]) for r in router.reports] == [(True, 0), (False, 0)]
    assert router.reports[0][4] == {}  # no latency: nothing was measured
