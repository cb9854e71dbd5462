"""Helpers for the tests of keys' and teams' limits: governed Route requests, settlements, and a fake
accounting that answers the ledger's SpendQuery on NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from modelrouter.keys.v1 import keys_pb2
from modelrouter.router.v1 import router_pb2


def governed(
    model: str,
    key_id: str,
    request_id: str,
    *,
    key: Mapping[str, Any] | None = None,
    team_id: str = "",
    team: Mapping[str, Any] | None = None,
    estimated_tokens: int = 10,
    max_output_tokens: int = 0,
    first: bool = True,
    hold_s: int = 0,
) -> router_pb2.RouteRequest:
    """A Route carrying an Admission, as a gateway fills it for a governed key."""
    return router_pb2.RouteRequest(
        model=model,
        key_id=key_id,
        estimated_tokens=estimated_tokens,
        admission=router_pb2.Admission(
            request_id=request_id,
            team_id=team_id,
            key_limits=keys_pb2.Limits(**(key or {})),
            team_limits=keys_pb2.Limits(**(team or {})),
            max_output_tokens=max_output_tokens,
            first=first,
            hold_s=hold_s,
        ),
    )


def settlement(
    request_id: str, key_id: str, *, team_id: str = "", used_tokens: int = 0, cost_nano_usd: int = 0
) -> router_pb2.Settlement:
    return router_pb2.Settlement(
        request_id=request_id,
        key_id=key_id,
        team_id=team_id,
        used_tokens=used_tokens,
        cost_nano_usd=cost_nano_usd,
    )


@dataclass
class FakeLedger:
    """Accounting's side of SpendQuery: ``spent`` by ("key"|"team", id), or ``error`` for every query."""

    spent: dict[tuple[str, str], int] = field(default_factory=dict)
    error: str = ""
    queries: list[keys_pb2.SpendQuery] = field(default_factory=list)

    async def answer(self, msg: Msg) -> None:
        query = keys_pb2.SpendQuery.FromString(msg.data)
        self.queries.append(query)
        who = ("key", query.key_id) if query.key_id else ("team", query.team_id)
        answer = keys_pb2.SpendAnswer(spent_nano_usd=self.spent.get(who, 0), error=self.error)
        await msg.respond(answer.SerializeToString())


@asynccontextmanager
async def fake_ledger(nc: NATS, subject: str) -> AsyncIterator[FakeLedger]:
    ledger = FakeLedger()
    subscription = await nc.subscribe(subject, cb=ledger.answer)
    await nc.flush()
    try:
        yield ledger
    finally:
        await subscription.unsubscribe()
