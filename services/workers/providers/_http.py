"""HTTP plumbing every network adapter shares: the pooled, traced client, per-call timeouts, and
provider failures mapped onto ``common.errors`` (so no adapter ever leaks an httpx exception)."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport
from httpx_sse import SSEError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from common.config import AUTH_SCHEME_OPTION
from common.errors import UpstreamError, UpstreamTimeoutError, error_for_upstream_status
from common.providers.base import ProviderCall

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("modelrouter.workers.http")

# Sized for a gateway: many concurrent calls to few hosts. Keep-alive connections are what make an
# upstream call cheap; idle ones are dropped after a minute (below most servers' idle timeouts).
POOL_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=60.0)
# Connecting should take milliseconds; a long call's budget is for the answer, not the handshake.
MAX_CONNECT_TIMEOUT_S = 10.0
# Paths an upstream client remembers merged with its base URL: an adapter calls a handful (Gemini's
# name the model), so this bound only matters against a path built from unbounded input.
MERGED_URLS_KEPT = 256


# Span names are the method for these (OTel HTTP semconv); any other method is "HTTP".
_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TracedTransport(AiohttpTransport):
    """aiohttp's pool, each request a CLIENT span that ends when the response headers are back, with
    the trace context sent upstream. Stands in for opentelemetry-instrumentation-httpx, whose
    generic wrapper (header normalising, semconv-mode checks, metrics) cost the workers more CPU
    than the transport itself; this records only the attributes that matter."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        method = request.method
        span = _tracer.start_span(
            method if method in _KNOWN_METHODS else "HTTP",
            kind=SpanKind.CLIENT,
            # Given at the start, as semconv asks, so a sampler can see them.
            attributes={
                "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
                "url.full": full_url(url),
                "server.address": url.host,
                "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 0),
            },
        )
        propagate.inject(request.headers, context=trace.set_span_in_context(span))
        try:
            response = await super().handle_async_request(request)
        except BaseException as exc:  # cancellation too: the span must end either way
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR, type(exc).__qualname__)
            span.end()
            raise
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # semconv: a 4xx is an error for the client side
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)
        span.end()
        return response


def full_url(url: httpx.URL) -> str:
    """``url`` without credentials or query (where API keys and signatures can travel)."""
    path = url.raw_path.split(b"?", 1)[0].decode("ascii")
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class UpstreamClient(httpx.AsyncClient):
    """httpx's client trimmed to what an upstream call uses: its one transport, no cookie jar, no auth
    flow, no redirects, no event hooks; and each path merged with ``base_url`` once.

    One client serves every caller of a provider, so a cookie the provider sets on one caller's
    response (e.g. a CDN's bot-management cookie) must not ride along on the next caller's request.
    The rest is per-call CPU: httpx's send machinery (auth and redirect generators, hooks, stream
    wrapper) cost ~0.15 ms a call, cookie extraction and re-merging the same paths ~5% each.
    ``base_url`` is fixed for the client's life.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, follow_redirects=False, **kwargs)
        self._upstream = transport
        self._merged_urls: dict[str, httpx.URL] = {}

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        if auth not in (httpx.USE_CLIENT_DEFAULT, None) or follow_redirects is True:
            raise ValueError("an upstream client neither authenticates nor follows redirects")
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        request.extensions.setdefault("timeout", self.timeout.as_dict())
        try:
            response = await self._upstream.handle_async_request(request)
        except httpx.RequestError as exc:
            _attach(exc, request)  # as httpx's send does: error handlers may ask which request failed
            raise
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)
        merged = self._merged_urls.get(url)
        if merged is None:
            merged = super()._merge_url(url)  # httpx.URL is immutable, so safe to hand out again
            if len(self._merged_urls) < MERGED_URLS_KEPT:
                self._merged_urls[url] = merged
        return merged

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("an upstream client keeps no cookies")


def _attach(exc: httpx.RequestError, request: httpx.Request) -> None:
    try:
        exc.request  # noqa: B018 (the property raises when no request is attached)
    except RuntimeError:
        exc.request = request


def pooled_client(base_url: str) -> httpx.AsyncClient:
    """One client per adapter instance, reused for every call; each request becomes a CLIENT span
    (and carries ``traceparent`` upstream)."""
    return UpstreamClient(
        base_url=base_url,
        # aiohttp's connection pool under httpx's API: about half the per-call cost of httpx's own
        # transport on the hot path (measured in bench/), same pooling and timeouts.
        transport=TracedTransport(limits=POOL_LIMITS),
        headers={"Content-Type": "application/json"},
    )


def timeout_for(seconds: float) -> httpx.Timeout:
    """``seconds`` bounds connecting, each write and each wait for upstream bytes (so a stream may run
    longer than ``seconds`` as long as it keeps producing)."""
    return httpx.Timeout(seconds, connect=min(seconds, MAX_CONNECT_TIMEOUT_S))


def retry_after_s(headers: httpx.Headers) -> float | None:
    """``Retry-After`` (seconds or an HTTP date), or OpenAI's ``retry-after-ms``."""
    if millis := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def upstream_error(
    provider: str,
    status: int,
    headers: httpx.Headers,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
) -> UpstreamError:
    """The error for an HTTP failure of the provider, classified by its status."""
    cls = error_for_upstream_status(status)
    if status in (401, 403):
        # Our credentials were refused: the provider's text may quote part of our key, so it goes to
        # the log, not to the client.
        log.warning("%s refused the configured credentials (HTTP %d): %s", provider, status, message)
        message = f"The upstream provider ({provider}) refused the gateway's credentials (HTTP {status})."
    client_fault = not cls.retryable and cls.status < 500
    return cls(
        message or f"The upstream provider ({provider}) answered HTTP {status}.",
        upstream_status=status,
        retry_after_s=retry_after_s(headers),
        # The provider's code/param help a client fix its own request; otherwise they are ours, except
        # a quota or credit that is gone, which the router cools the deployment down for.
        code=code if client_fault or code == "insufficient_quota" else None,
        param=param if client_fault else None,
    )


def _is_dropped_connection(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp reports every aiohttp connection error (refused, reset, server gone) as
    ``ConnectTimeout``; only aiohttp's real timeouts are timeouts."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, aiohttp.ServerTimeoutError)


@contextmanager
def upstream_failures(provider: str, timeout_s: float) -> Iterator[None]:
    """Translate transport failures inside the block into UpstreamError classes."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if _is_dropped_connection(exc):
            raise UpstreamError(
                f"The connection to the upstream provider ({provider}) failed: {exc.__cause__}"
            ) from exc
        raise UpstreamTimeoutError(f"The upstream provider ({provider}) did not answer within {timeout_s:g}s.") from exc
    except httpx.ConnectError as exc:
        raise UpstreamError(f"Could not connect to the upstream provider ({provider}): {exc}") from exc
    except httpx.TransportError as exc:  # includes a connection dropped mid-stream
        raise UpstreamError(
            f"The connection to the upstream provider ({provider}) failed: {exc or type(exc).__name__}"
        ) from exc
    except SSEError as exc:
        raise UpstreamError(f"The upstream provider ({provider}) did not answer with a stream: {exc}") from exc


def bearer(api_key: str | None, scheme: str = "Bearer") -> Mapping[str, str]:
    return {"Authorization": f"{scheme} {api_key}"} if api_key else {}


def authorization(call: ProviderCall) -> Mapping[str, str]:
    """``Authorization: <scheme> <key>``: ``Bearer`` unless the target's ``auth_scheme`` option names
    another (remote catalogues use ``OAuth``)."""
    return bearer(call.api_key, call.options.get(AUTH_SCHEME_OPTION) or "Bearer")


def key_header(call: ProviderCall, name: str) -> Mapping[str, str]:
    """The key in the provider's own header ``name`` (``x-api-key``, ``x-goog-api-key``), unless the
    target's ``auth_scheme`` option names a scheme: then ``Authorization: <scheme> <key>`` alone. A
    remote catalogue's host takes ``Authorization: OAuth <token>`` for every model, whatever API the
    model speaks behind it, and must not be sent the token under another name as well."""
    if not call.api_key:
        return {}
    scheme = call.options.get(AUTH_SCHEME_OPTION)
    return {"Authorization": f"{scheme} {call.api_key}"} if scheme else {name: call.api_key}


def json_or_none(raw: bytes | str) -> Any:
    """The parsed JSON, or None when the provider sent something else (an HTML error page, say)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def json_object(raw: bytes | str, provider: str) -> dict[str, Any]:
    """A JSON object from the provider, or the retryable UpstreamError a garbled answer deserves."""
    parsed = json_or_none(raw)
    if not isinstance(parsed, dict):
        raise UpstreamError(f"The upstream provider ({provider}) answered with something that is not JSON.")
    return parsed


def error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, code, param) from the error bodies OpenAI-compatible servers send:
    ``{"error": {"message", "code", "param"}}``, ``{"error": "..."}``, ``{"message": ...}`` or
    ``{"detail": ...}`` (FastAPI-based servers)."""
    if not isinstance(body, dict):
        return "", None, None
    error = body.get("error")
    if isinstance(error, dict):
        code, param = error.get("code"), error.get("param")
        return (
            str(error.get("message") or ""),
            str(code) if code is not None else None,
            str(param) if param is not None else None,
        )
    for key in ("error", "message", "detail"):
        if isinstance(body.get(key), str):
            return body[key], None, None
    return "", None, None


def error_from_response(provider: str, response: httpx.Response) -> UpstreamError:
    """The UpstreamError for a failed HTTP answer whose body is one of ``error_fields``' shapes
    (OpenAI-compatible servers, Ollama, TGI, Cohere), falling back to the body's text."""
    message, code, param = error_fields(json_or_none(response.content))
    return upstream_error(
        provider,
        response.status_code,
        response.headers,
        message or response.text[:500].strip(),
        code=code,
        param=param,
    )
