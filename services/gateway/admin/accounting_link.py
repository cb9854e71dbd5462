"""One admin request to accounting and its answer, over NATS request/reply (``subjects.ADMIN``'s
envelope): the method, path, query and JSON body as received, answered with a status and JSON body
that the gateway relays as they are."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from starlette.requests import Request

from common.errors import DatabaseUnavailableError, InvalidRequestError, PayloadTooLargeError
from gateway.deps import read_body

log = logging.getLogger(__name__)

# Accounting bounds its own database calls well inside this; past it, nobody is answering.
ADMIN_TIMEOUT_S = 8.0
MAX_ADMIN_BODY_BYTES = 256 * 1024


class AdminAnswer:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


async def envelope_of(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, MAX_ADMIN_BODY_BYTES)
    except PayloadTooLargeError:
        raise PayloadTooLargeError(f"An admin request's body is limited to {MAX_ADMIN_BODY_BYTES} bytes.") from None
    body: Any = None
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("The request body is not valid JSON.", code="invalid_json") from None
    return {"method": request.method, "path": request.url.path, "query": dict(request.query_params), "body": body}


async def ask(nc: NATS, subject: str, envelope: dict[str, Any]) -> AdminAnswer:
    try:
        reply = await nc.request(subject, orjson.dumps(envelope), timeout=ADMIN_TIMEOUT_S)
    except (NatsError, TimeoutError) as exc:  # no responders, a timeout, a closed connection
        log.warning("admin request %s %s: accounting did not answer (%s)", envelope["method"], envelope["path"], exc)
        raise DatabaseUnavailableError(
            "The keys database is unreachable: accounting, which keeps it, did not answer. Known keys keep working; "
            "try the admin request again later."
        ) from None
    answer = orjson.loads(reply.data)
    return AdminAnswer(int(answer["status"]), answer.get("body"))
