"""NATS connection and traced publish/consume, shared by gateway, workers and accounting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import nats
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from common import subjects
from common.telemetry import extract_context, inject_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("modelrouter.messaging")

START_HINTS = {
    "nats": "start it with: nats-server -js  (or set NATS_URL)",
    "redis": "start it with: redis-server  (or set REDIS_URL)",
    "postgres": "start it with: pg_ctlcluster <version> main start  (or set DATABASE_URL)",
    "router": "start it with: python -m router  (or set ROUTER_ADDR)",
}


class DependencyUnavailable(RuntimeError):
    """A backing service is not reachable; the message says which one and how to start it."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        super().__init__(f"{service} at {url} is not reachable ({reason}); {START_HINTS.get(service, '')}")


async def connect_nats(url: str, name: str, first_connect_timeout_s: float = 5.0) -> NATS:
    last_error: list[Exception] = []  # one slot: error_cb keeps firing for the connection's life

    async def _on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        log.warning("nats: %s", exc)

    try:
        # max_reconnect_attempts=-1 also makes nats-py retry the *first* connect forever, so that
        # one is bounded here: a service must not hang at start when NATS is not there.
        return await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=_on_error,
            ),
            timeout=first_connect_timeout_s,
        )
    except Exception as exc:
        cause = last_error[0] if isinstance(exc, TimeoutError) and last_error else exc
        raise DependencyUnavailable("nats", url, str(cause) or type(cause).__name__) from None


def start_producer_span(subject: str, parent: str | None = None) -> Span:
    """A PRODUCER span for one message, not made current (the caller ends it); ``parent`` (a W3C
    traceparent) overrides the current span as the parent."""
    return _tracer.start_span(
        f"send {subject}",
        context=extract_context({"traceparent": parent}) if parent else None,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    )


@contextmanager
def producer_span(
    subject: str, headers: dict[str, str] | None = None, parent: str | None = None
) -> Iterator[tuple[Span, dict[str, str]]]:
    """A PRODUCER span for one publish; yields the headers carrying its ``traceparent``. ``parent``
    (a W3C traceparent) overrides the current span as the parent."""
    span = start_producer_span(subject, parent)
    with trace.use_span(span, end_on_exit=True):
        yield span, inject_headers(headers)


@contextmanager
def consumer_span(name: str, subject: str, headers: Mapping[str, str] | None) -> Iterator[Span]:
    """A CONSUMER span, child of the producer whose ``traceparent`` came in ``headers``."""
    with _tracer.start_as_current_span(
        name,
        context=extract_context(headers),
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ) as span:
        yield span


async def ensure_usage_stream(nc: NATS, stream: str = subjects.USAGE_STREAM, subject: str = subjects.USAGE) -> None:
    """Create (or keep) the JetStream stream usage events go to; idempotent, called at start by the
    gateway (publisher) and accounting (consumer) so either may start first."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    config = StreamConfig(
        name=stream,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=7 * 24 * 3600,
        duplicate_window=300,  # seconds: a re-published request id inside it is dropped by JetStream
    )
    js = nc.jetstream()
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_keys_bucket(nc: NATS, bucket: str = subjects.KEYS_BUCKET) -> KeyValue:
    """The key-value bucket of keys and teams (accounting writes it, gateways watch it), created if
    missing; idempotent, so either side may start first. One revision per entry: only the current
    record matters, and a watcher started later gets exactly that."""
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BucketNotFoundError

    js = nc.jetstream()
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE))
