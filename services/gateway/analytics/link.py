"""One analytics question to accounting and its answer, over NATS request/reply
(``subjects.ANALYTICS``): the gateway opens no database connection."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from common.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

# Accounting bounds its queries (ANALYTICS_DB_TIMEOUT_S, 10 s) inside this; past it nobody answers.
ANALYTICS_TIMEOUT_S = 15.0


async def ask(nc: NATS, subject: str, envelope: dict[str, Any]) -> tuple[int, Any]:
    """Accounting's (status, body) for ``envelope``; 503 when accounting does not answer."""
    try:
        reply = await nc.request(subject, orjson.dumps(envelope), timeout=ANALYTICS_TIMEOUT_S)
    except (NatsError, TimeoutError) as exc:  # no responders, a timeout, a closed connection
        log.warning("analytics %s: accounting did not answer (%s)", envelope.get("op"), exc)
        raise DatabaseUnavailableError(
            "Usage analytics are unavailable: accounting, which keeps the usage database, did not answer. "
            "Try again later."
        ) from None
    answer = orjson.loads(reply.data)
    return int(answer["status"]), answer.get("body")
