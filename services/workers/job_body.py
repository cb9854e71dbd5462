"""A job's body when it was too large to travel in the Job: fetched from the gateway that holds it
(``gateway/job_bodies.py``), one NATS message per piece, until ``Job.body_size`` bytes are here."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from common.errors import UpstreamError
from modelrouter.events.v1 import events_pb2

# Per piece: a gateway answers from memory, so this only runs out when it is gone or cut off.
FETCH_TIMEOUT_S = 10.0


class BodyUnavailableError(UpstreamError):
    """The gateway no longer holds the body (its request ended) or cannot be reached. Nobody waits for
    this job's answer then, and another worker would fare no better."""

    default_code = "request_body_unavailable"
    retryable = False


async def fetch_body(nc: NATS, job: events_pb2.Job, timeout_s: float = FETCH_TIMEOUT_S) -> bytes:
    parts: list[bytes] = []
    offset = 0
    while offset < job.body_size:
        ask = events_pb2.BodyRequest(offset=offset).SerializeToString()
        try:
            answer = await nc.request(job.body_subject, ask, timeout=timeout_s)
        except (NatsError, TimeoutError) as exc:  # no responders, a timeout, a closed connection
            raise BodyUnavailableError(f"Could not fetch the request body from the gateway ({exc!r}).") from None
        piece = events_pb2.BodyPiece.FromString(answer.data)
        if piece.missing or not piece.data:
            raise BodyUnavailableError("The gateway no longer holds the request body.")
        parts.append(piece.data)
        offset += len(piece.data)
    return b"".join(parts)
