"""Request bodies too large for one NATS message: held here while their request runs, and lent to the
worker that takes the job, piece by piece, over request/reply.

NATS refuses a message over its ``max_payload`` (1 MiB by default), and a vision request with a base64
image or a long prompt is routinely bigger. Such a ``Job`` leaves its body out and names this gateway's
subject for it instead (``Job.body_subject``); the worker asks for the piece at each offset until it has
``Job.body_size`` bytes. Pulling keeps the flow at the worker's pace (nothing piles up in NATS for a
slow consumer) and needs no storage: the body lives only in this process, for as long as the request.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common import subjects
from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)

# Room in a NATS message for what surrounds a piece or a Job's other fields (protobuf framing, the
# target, headers carrying a traceparent).
ENVELOPE_BYTES = 16 * 1024


class JobBodies:
    def __init__(self, nc: NATS, gateway_id: str) -> None:
        self._nc = nc
        self._gateway_id = gateway_id
        self._held: dict[str, bytes] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(subjects.bodies_wildcard(self._gateway_id), cb=self._on_fetch)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def fits_in_job(self, body: bytes) -> bool:
        return len(body) <= self._nc.max_payload - ENVELOPE_BYTES

    def hold(self, request_id: str, body: bytes) -> str:
        """Keep ``body`` for the workers of ``request_id`` (every attempt's); the subject they fetch it on."""
        self._held[request_id] = body
        return subjects.body(self._gateway_id, request_id)

    def release(self, request_id: str) -> None:
        self._held.pop(request_id, None)

    @property
    def held(self) -> int:
        return len(self._held)

    async def _on_fetch(self, msg: Msg) -> None:
        body = self._held.get(subjects.request_id_of_reply(msg.subject))
        try:
            offset = events_pb2.BodyRequest.FromString(msg.data).offset
        except DecodeError:
            log.error("dropping a malformed body request on %s", msg.subject)
            return
        if body is None:  # the request ended (a late fetch of an abandoned attempt)
            piece = events_pb2.BodyPiece(missing=True)
        else:
            piece = events_pb2.BodyPiece(data=body[offset : offset + self._nc.max_payload - ENVELOPE_BYTES])
        if msg.reply:
            await self._nc.publish(msg.reply, piece.SerializeToString())
