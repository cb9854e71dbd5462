"""A tiny HTTP liveness/readiness endpoint for services that have no HTTP server of their own
(workers, accounting), so Docker HEALTHCHECKs and Kubernetes probes can ask them.

``GET /health`` answers 200 while the process runs; ``GET /ready`` answers 200 while ``ready()``
is true (false once draining starts) and 503 otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._host, self._port, self._ready = host, port, ready
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
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
            ok = path.startswith(b"/health") or (path.startswith(b"/ready") and self._ready())
            body = b"ok\n" if ok else b"unavailable\n"
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
