"""An answer's ``x-modelrouter-*`` headers: why its deployment was chosen (``common.route_metadata``,
the facts the body's ``router_metadata`` gives) and what it cost.

Headers leave before the body. A whole answer's usage is known by then: ``estimated-cost`` and
``cost-usd`` are its cost as billed (``common.pricing.request_cost``, what accounting stores). A
stream's is not: ``estimated-cost`` is then the prompt's estimate at the deployment's prompt price,
and the real cost comes in the stream's usage chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.pricing import Cost, billed_cost, usd_json

if TYPE_CHECKING:
    from gateway.call import Call

COST_HEADER = "x-modelrouter-cost-usd"


def route_headers(call: Call) -> dict[str, str]:
    if call.route is None or call.price is None:  # never routed
        return {}
    # A whole answer's cost as billed; a stream's estimate from its prompt.
    cost = call.answer_cost() if call.usage is not None else billed_cost(call.estimated_tokens, 0, 0, call.price)
    amount = _text(cost)
    headers = call.route.headers(amount)
    if call.usage is not None and amount is not None:
        headers[COST_HEADER] = amount
    return headers


def _text(cost: Cost | None) -> str | None:
    return usd_json(cost.total) if cost is not None else None
