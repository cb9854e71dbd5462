"""Check that Redis, NATS and Postgres answer before running services or tests.

    python -m scripts.preflight redis nats postgres

Exits 1 naming each service that is not reachable and how to start it.
"""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlsplit

from common.messaging import START_HINTS
from common.settings import CommonSettings

DEFAULT_PORTS = {"redis": 6379, "nats": 4222, "postgres": 5432}


def _url(settings: CommonSettings, service: str) -> str:
    return {"redis": settings.redis_url, "nats": settings.nats_url, "postgres": settings.database_url}[service]


def reachable(url: str, default_port: int, timeout: float = 2.0) -> str | None:
    """None if a TCP connection to the URL's host:port succeeds, else the reason."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def main(argv: list[str]) -> int:
    settings = CommonSettings()
    failed = 0
    for service in argv or list(DEFAULT_PORTS):
        url = _url(settings, service)
        reason = reachable(url, DEFAULT_PORTS[service])
        if reason:
            failed += 1
            sys.stderr.write(f"{service} at {url} is not reachable ({reason}); {START_HINTS[service]}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
