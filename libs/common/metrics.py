"""What every service's Prometheus metrics share: the exposition of a registry, the buckets of their
latency histograms, and the one way an upstream failure is named (``kind``) wherever it is counted.

Each service keeps its metrics in an object built by its ``main`` (``gateway.metrics``,
``router.metrics``, ``workers.metrics``, ``accounting.metrics``) on the process's default registry,
which prometheus-client also fills with the process's CPU, memory and file descriptors; tests build
them on a registry of their own. Nothing is registered at import.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

# Seconds: from a cached answer's few milliseconds to a long generation's minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Seconds: a Redis script or a Postgres INSERT, sub-millisecond to a stalled second.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# An upstream failure's kind, from its error code where that says more than the status (the worker
# vanished, the stream stalled), else from its HTTP status; anything else is "error". A closed set,
# so a provider's own error codes can never multiply the series.
_KIND_BY_CODE = {"worker_lost": "worker_lost", "stream_stalled": "stalled", "worker_shutdown": "worker_shutdown"}
_KIND_BY_STATUS = {400: "bad_request", 429: "rate_limited", 499: "cancelled", 503: "unavailable", 504: "timeout"}


def error_kind(status: int, code: str | None) -> str:
    return _KIND_BY_CODE.get(code or "") or _KIND_BY_STATUS.get(status, "error")


def exposition(registry: CollectorRegistry = REGISTRY, accept: str = "") -> tuple[bytes, str]:
    """The registry's samples and their content type: Prometheus text, or OpenMetrics when the
    scraper's ``Accept`` asks for it (prometheus-client's own negotiation)."""
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
