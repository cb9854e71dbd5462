"""What a request cost, in exact decimal USD: what accounting stores, and what the gateway settles a
key's budget with (the same function, so the two never disagree).

Prices travel as protobuf doubles (USD per 1,000 tokens). Each is read back through its shortest
round-tripping text (``repr``), so a configured ``0.0015`` is the decimal 0.0015 and not the
binary double's 0.00150000000000000003...; from there every step is decimal arithmetic.
"""

from __future__ import annotations

import functools
import math
from decimal import ROUND_HALF_EVEN, Context, Decimal

# USD; 12 decimal places keep per-token prices of the cheapest models exact.
COST_PRECISION, COST_SCALE = 20, 12
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


# Budgets are counted in Redis as integers of this unit (USD 1e-9): exact sums, no float drift, and
# an int64 holds over nine billion dollars of it.
NANO_USD_PER_USD = 1_000_000_000


def to_nano_usd(usd: Decimal | float) -> int:
    """``usd`` in nano-USD, rounded up: a budget is never charged less than the cost."""
    return math.ceil(Decimal(repr(usd) if isinstance(usd, float) else usd) * NANO_USD_PER_USD)


def max_cost_nano_usd(
    prompt_tokens: int, completion_tokens: int, prompt_per_1k: float, completion_per_1k: float
) -> int:
    """The most a request may cost, in nano-USD, for a reservation against a budget: exactly
    ``to_nano_usd(cost_usd(...))``, in integers, since every budgeted admission computes it (the
    decimal steps cost the router about 10 µs a request)."""
    prompt_num, prompt_den = _price_ratio(prompt_per_1k)
    completion_num, completion_den = _price_ratio(completion_per_1k)
    # The cost in units of 1e-12 USD (cost_usd's scale), as an exact fraction, rounded half-even.
    numerator = (prompt_tokens * prompt_num * completion_den + completion_tokens * completion_num * prompt_den) * _SCALE
    denominator = prompt_den * completion_den * 1000
    units, rest = divmod(numerator, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and units % 2):
        units += 1
    return -(-units // _UNITS_PER_NANO)  # rounded up to nano-USD, as to_nano_usd


_SCALE = 10**COST_SCALE
_UNITS_PER_NANO = _SCALE // NANO_USD_PER_USD


@functools.lru_cache(maxsize=4096)
def _price_ratio(usd_per_1k: float) -> tuple[int, int]:
    """A price as the exact fraction ``price_to_decimal`` reads it (a deployment has few prices)."""
    return price_to_decimal(usd_per_1k).as_integer_ratio()
