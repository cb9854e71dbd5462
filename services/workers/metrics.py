"""The worker's Prometheus metrics, served on its health port (``common.health``): jobs by provider
and outcome, the upstream call's latency by provider, its failures by provider and kind
(``common.metrics.error_kind``), and jobs in flight.

A job is recorded once, when its result is ready; its provider's children are resolved once and
cached, and the in-flight gauge reads a plain int at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import LATENCY_BUCKETS, error_kind
from modelrouter.events.v1 import events_pb2


@dataclass(slots=True)
class _Provider:
    ok: Counter
    failed: Counter
    latency: Histogram


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.in_flight = 0
        Gauge("modelrouter_worker_jobs_in_flight", "Jobs running on this worker.", registry=self.registry).set_function(
            lambda: self.in_flight
        )
        self._jobs = Counter(
            "modelrouter_worker_jobs",
            "Finished jobs by provider and outcome (ok, error).",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "modelrouter_worker_upstream_duration_seconds",
            "Time of a job's upstream call, from its start to its last byte (or its failure), by provider.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter(
            "modelrouter_worker_upstream_errors",
            "Failed jobs by provider and kind (bad_request, rate_limited, unavailable, timeout, cancelled, "
            "worker_shutdown, error).",
            ["provider", "kind"],
            registry=self.registry,
        )
        self._providers: dict[str, _Provider] = {}

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, provider: str, seconds: float, result: events_pb2.Result) -> None:
        """A job that ``started`` ended with ``result`` after ``seconds`` of upstream call."""
        self.in_flight -= 1
        children = self._providers.get(provider)
        if children is None:
            children = self._providers[provider] = _Provider(
                self._jobs.labels(provider, "ok"), self._jobs.labels(provider, "error"), self._latency.labels(provider)
            )
        children.latency.observe(seconds)
        if result.ok:
            children.ok.inc()
        else:
            children.failed.inc()
            self._errors.labels(provider, error_kind(result.error.status, result.error.code)).inc()
