"""What a request cost, in exact decimal USD.

Prices travel as protobuf doubles (USD per 1,000 tokens). Each is read back through its shortest
round-tripping text (``repr``), so a configured ``0.0015`` is the decimal 0.0015 and not the
binary double's 0.00150000000000000003...; from there every step is decimal arithmetic.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal

from accounting.models import COST_PRECISION, COST_SCALE

_QUANTUM = Decimal(1).scaleb(-COST_SCALE)
_THOUSAND = Decimal(1000)
# Wide enough that no product of a uint32 token count and a sane price is rounded before the
# final quantize; out-of-range totals are left for the column's own bound to reject.
_CONTEXT = Context(prec=COST_PRECISION + 40)


class InvalidPriceError(ValueError):
    pass


def price_to_decimal(usd_per_1k: float) -> Decimal:
    if not math.isfinite(usd_per_1k) or usd_per_1k < 0:
        raise InvalidPriceError(f"price must be a finite, non-negative number, got {usd_per_1k!r}")
    return Decimal(repr(usd_per_1k))


def cost_usd(prompt_tokens: int, completion_tokens: int, prompt_per_1k: float, completion_per_1k: float) -> Decimal:
    """USD for the tokens at the per-1k prices, rounded half-even to the column's scale.

    Cached prompt tokens are billed as prompt tokens: the event carries no separate cached price.
    """
    prompt = _CONTEXT.multiply(Decimal(prompt_tokens), price_to_decimal(prompt_per_1k))
    completion = _CONTEXT.multiply(Decimal(completion_tokens), price_to_decimal(completion_per_1k))
    total = _CONTEXT.divide(_CONTEXT.add(prompt, completion), _THOUSAND)
    return total.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN, context=_CONTEXT)
