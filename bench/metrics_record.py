"""What the gateway's metrics cost a request: ``GatewayMetrics.started`` + ``finished`` (what the
dispatcher calls once per request), timed with ``timeit`` on a realistic usage event, against the
same event's other per-request work for scale (building its protobuf, serialising it).

    python -m bench.metrics_record [--number N]

Cases: a priced success (the common one), a streamed success (adds the TTFT observation), an
upstream failure (adds an upstream-error increment), and a refusal by a key's rate limit.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from common.errors import ModelRouterError, UpstreamError
from gateway.admission import billed
from gateway.metrics import GatewayMetrics
from gateway.router_client import KeyRateLimitError
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2


def event(status: int = 200, ttft_ms: float = 0.0, provider: str = "openai") -> events_pb2.UsageEvent:
    e = events_pb2.UsageEvent(
        request_id="req-0123456789abcdef",
        key_id="key_abc",
        endpoint="/v1/chat/completions",
        requested_model="gpt-4o-mini",
        provider=provider,
        upstream_model="gpt-4o-mini-2024-07-18",
        deployment_id="openai-mini",
        http_status=status,
        latency_ms=412.5,
        ttft_ms=ttft_ms,
        usage=events_pb2.Usage(prompt_tokens=1234, completion_tokens=321, total_tokens=1555),
    )
    if provider:
        e.price.CopyFrom(router_pb2.Price(prompt_per_1k=0.00015, completion_per_1k=0.0006))
    return e


def per_call_us(statement: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def main(number: int) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    upstream = UpstreamError("boom", upstream_status=500)
    cases: list[tuple[str, events_pb2.UsageEvent, ModelRouterError | None]] = [
        ("success", event(), None),
        ("streamed success", event(ttft_ms=95.0), None),
        ("upstream failure", event(status=502), upstream),
        ("key rate limit", event(status=429, provider=""), KeyRateLimitError("limit")),
    ]
    print(f"{'case':<28}{'µs per request':>16}")
    for name, e, error in cases:

        def record(e: events_pb2.UsageEvent = e, error: ModelRouterError | None = error) -> None:
            metrics.started()
            metrics.finished(e, error, billed(e))  # the cost as _account computes it, once
            if error is upstream:
                metrics.upstream_error("openai", upstream)

        print(f"{name:<28}{per_call_us(record, number):>16.2f}")
    sample = event()
    print(f"{'(for scale) event build':<28}{per_call_us(lambda: event(), number):>16.2f}")
    print(f"{'(for scale) event serialise':<28}{per_call_us(sample.SerializeToString, number):>16.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20_000)
    main(parser.parse_args().number)
