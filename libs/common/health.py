"""A tiny HTTP server for a service's internal port: liveness/readiness for Docker HEALTHCHECKs and
Kubernetes probes, and Prometheus metrics for the cluster's scraper. The services with no HTTP server
of their own (router, workers, accounting) serve it on their health port; the gateway on its metrics
port, away from its public application and its keys.

``GET /health`` answers 200 while the process runs; ``GET /ready`` answers 200 while ``ready()`` is
true (false once draining starts) and 503 otherwise; ``GET /metrics`` answers the registry's samples
(``common.metrics.exposition``), without authentication: the port is not exposed outside the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry

from common.metrics import exposition

# Long enough for a scraper's request line and headers; a client that sends less is dropped.
_READ_TIMEOUT_S = 5
_MAX_HEADERS = 100


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool], registry: CollectorRegistry = REGISTRY) -> None:
        self._host, self._port, self._ready, self._registry = host, port, ready, registry
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                line = await reader.readline()
                path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
                accept = await _accept_header(reader) if path.startswith(b"/metrics") else ""
            if path.startswith(b"/metrics"):
                status, (body, content_type) = b"200 OK", exposition(self._registry, accept)
            else:
                ok = path.startswith(b"/health") or (path.startswith(b"/ready") and self._ready())
                body, content_type = (b"ok\n" if ok else b"unavailable\n"), "text/plain"
                status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type.encode() + b"\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def _accept_header(reader: asyncio.StreamReader) -> str:
    """The request's ``Accept`` header (a scraper asks for OpenMetrics with it), reading up to the
    blank line that ends the headers."""
    accept = ""
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"accept":
            accept = value.strip().decode("latin-1")
    return accept
