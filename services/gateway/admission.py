"""What the router admits a governed key's request against, and the settlement that ends it.

The gateway knows the key (``Keyring``) and the request (its prompt estimate and ``max_tokens``); the
router decides, in the same atomic Redis step as the deployment's limits, whether the key's and its
team's rpm, tpm, parallel slots and budgets have room, and holds a reservation until the request
ends. The settlement then gives back what the request did not use: its real tokens, and its cost as
accounting bills it (``common.pricing``, the same function)."""

from __future__ import annotations

from common.pricing import Cost, billed_cost, to_nano_usd
from gateway.keyring import Principal
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

# How long a reservation may stand unsettled before the router lets it go by itself (a gateway killed
# mid-request never settles). Longer than any request may run: a long stream must keep its slot.
HOLD_S = 900


def admission_for(principal: Principal, request_id: str, max_output_tokens: int) -> router_pb2.Admission | None:
    if not principal.governed:
        return None
    admission = router_pb2.Admission(
        request_id=request_id,
        team_id=principal.team_id,
        max_output_tokens=max_output_tokens,
        first=True,
        hold_s=HOLD_S,
    )
    if principal.key_limits is not None:
        admission.key_limits.CopyFrom(principal.key_limits)
    if principal.team_limits is not None:
        admission.team_limits.CopyFrom(principal.team_limits)
    return admission


def billed(event: events_pb2.UsageEvent) -> Cost | None:
    """What the request is billed, from its usage event, as accounting stores it (None: its price is
    unknown, or one accounting refuses). Computed once per request, for its settlement and metrics."""
    usage = event.usage
    return billed_cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, event.price)


def settlement_of(event: events_pb2.UsageEvent, cost: Cost | None) -> router_pb2.Settlement:
    """From the request's usage event and its ``billed`` cost: what it used is exactly what it is
    billed for."""
    usage = event.usage
    return router_pb2.Settlement(
        request_id=event.request_id,
        key_id=event.key_id,
        team_id=event.team_id,
        used_tokens=usage.prompt_tokens + usage.completion_tokens,
        # An unknown price bills nothing against a budget (its row says "unknown", not 0).
        cost_nano_usd=to_nano_usd(cost.total) if cost is not None else 0,
    )
