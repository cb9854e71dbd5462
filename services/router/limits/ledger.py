"""The usage ledger's word on what a key or team has spent: asked of accounting over NATS when a
budget's counter is missing from Redis (a new window, or Redis lost its data), so a counter is never
restarted from zero. No answer means no admission: the request is refused with a 503."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS

from common.errors import DatabaseUnavailableError
from modelrouter.keys.v1 import keys_pb2

log = logging.getLogger(__name__)

# Long enough for a Postgres SUM over a month of one key's rows; short enough that a client's request
# is not held long when accounting is down.
LEDGER_TIMEOUT_S = 2.0


class LedgerUnreachableError(DatabaseUnavailableError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"The budget's spend cannot be rebuilt: the usage ledger is unreachable ({reason}).")


class SpendLedger:
    """Asks ``subject`` (accounting's, settings.ledger_subject). ``connection`` is set once the
    router's NATS connection is up; until then every question fails as unreachable."""

    def __init__(self, subject: str, timeout_s: float = LEDGER_TIMEOUT_S) -> None:
        self.subject = subject
        self.timeout_s = timeout_s
        self.connection: NATS | None = None

    async def spent_since(self, *, since_ms: int, key_id: str = "", team_id: str = "") -> int:
        """Nano-USD the ledger holds for the key or team since ``since_ms``; LedgerUnreachableError if
        it cannot say."""
        nc = self.connection
        if nc is None or not nc.is_connected:
            raise LedgerUnreachableError("no NATS connection")
        query = keys_pb2.SpendQuery(key_id=key_id, team_id=team_id, since_ms=since_ms)
        try:
            reply = await nc.request(self.subject, query.SerializeToString(), timeout=self.timeout_s)
            answer = keys_pb2.SpendAnswer.FromString(reply.data)
        except Exception as exc:  # timeout, no responders, a broken connection, a garbled answer
            log.warning("ledger spend query on %s failed: %r", self.subject, exc)
            raise LedgerUnreachableError(type(exc).__name__) from None
        if answer.error:
            log.warning("ledger spend query on %s: %s", self.subject, answer.error)
            raise LedgerUnreachableError(answer.error)
        return answer.spent_nano_usd
