"""What the gateway tells the router about each attempt (``Router.ReportOutcome``, sent on the
RouteBatchStream with settlements).

Two kinds of targets: those whose model's strategy needs every outcome (``Target.report_outcome``:
least-busy ends the attempt's in-flight count with it, latency feeds its EWMAs with the attempt's
latency and time to first token) and the rest (priority and the pure orders), which cost nothing per
request: only a failure that blames the deployment is reported, and the success that ends a run of
failures (``Target.recent_failures``), so a priority model's c=1 path is unchanged.
"""

from __future__ import annotations

import time

from common.errors import ModelRouterError, UpstreamError
from gateway.ledger import Ledger
from gateway.router_client import RouterClient
from modelrouter.router.v1 import router_pb2

# The upstream's own words for a quota or credit that is gone (OpenAI's code on a 429); with a 402 the
# router cools the deployment down instead of counting a failure.
QUOTA_CODES = frozenset({"insufficient_quota"})


def quota_gone(error: UpstreamError) -> bool:
    return error.upstream_status == 402 or (error.code or "") in QUOTA_CODES


def blames(error: ModelRouterError | None) -> bool:
    """The deployment failed (5xx, timeout, connect error, 429, quota gone), not the request."""
    if not isinstance(error, UpstreamError) or not error.blames_deployment:
        return False
    return error.retryable or quota_gone(error)


def attempt_started(ledger: Ledger, target: router_pb2.Target) -> None:
    ledger.attempt_started = time.perf_counter()
    ledger.outcome_due = target.report_outcome


def report_failed_attempt(
    router: RouterClient, ledger: Ledger, target: router_pb2.Target, error: UpstreamError
) -> None:
    """An attempt that failed before the first byte (the dispatcher may fail over)."""
    if blames(error):
        _report_failure(router, target, error)
    elif ledger.outcome_due:  # the request's fault, or the path's: the deployment answered
        router.report(target.deployment_id, True)
    ledger.outcome_due = False


def report_served(router: RouterClient, target: router_pb2.Target) -> None:
    """The attempt produced its first reply. Targets reporting every outcome wait for the end
    (``report_finished``); others report only the success that ends a run of failures."""
    if target.recent_failures and not target.report_outcome:
        router.report(target.deployment_id, True)


def report_finished(router: RouterClient, ledger: Ledger, now: float) -> None:
    """The request ended (answered, failed mid-stream, or cancelled): the last attempt's outcome
    if it is still owed, with its latency and time to first token when it succeeded."""
    target = ledger.target
    if not ledger.outcome_due or target is None:
        return
    ledger.outcome_due = False
    if ledger.error is None and not ledger.cancelled:
        ttft = (ledger.first_byte_at - ledger.attempt_started) * 1000 if ledger.first_byte_at else 0.0
        router.report(
            target.deployment_id, True, latency_ms=(now - ledger.attempt_started) * 1000, ttft_ms=max(ttft, 0.0)
        )
    elif isinstance(ledger.error, UpstreamError) and blames(ledger.error):
        _report_failure(router, target, ledger.error)
    else:  # cancelled, or not the deployment's fault: only its in-flight count ends
        router.report(target.deployment_id, True)


def _report_failure(router: RouterClient, target: router_pb2.Target, error: UpstreamError) -> None:
    router.report(
        target.deployment_id,
        False,
        error.upstream_status,
        error.retry_after_s or 0,
        error_code=error.code or "",
    )
