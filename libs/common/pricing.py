"""What a request cost, in exact decimal USD: what the worker writes into the answer, what accounting
stores, and what the gateway settles a key's budget with (``request_cost``: one function, so the
three never disagree).

Prices travel as protobuf doubles (USD per 1,000 tokens). Each is read back through its shortest
round-tripping text (``repr``), so a configured ``0.0015`` is the decimal 0.0015 and not the
binary double's 0.00150000000000000003...; from there every step is exact (the prices' decimal
fractions, computed in integers), and each side is rounded once, half-even, to the column's scale.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Protocol

# USD; 12 decimal places keep per-token prices of the cheapest models exact.
COST_PRECISION, COST_SCALE = 20, 12
# Wide enough that no cost a uint32 token count and a sane price make is rounded when it becomes a
# Decimal; out-of-range totals are left for the column's own bound to reject.
_CONTEXT = Context(prec=COST_PRECISION + 40)


class InvalidPriceError(ValueError):
    pass


# A process sees few distinct prices (one per deployment), each read once per request otherwise.
@functools.lru_cache(maxsize=4096)
def price_to_decimal(usd_per_1k: float) -> Decimal:
    if not math.isfinite(usd_per_1k) or usd_per_1k < 0:
        raise InvalidPriceError(f"price must be a finite, non-negative number, got {usd_per_1k!r}")
    return abs(Decimal(repr(usd_per_1k)))  # abs: -0.0 (== 0.0, so one cache entry) reads as 0


class PriceLike(Protocol):
    """``router.v1.Price`` (what a Target and a UsageEvent carry), or anything shaped like it."""

    prompt_per_1k: float
    completion_per_1k: float
    cached_prompt_per_1k: float
    unknown: bool

    def HasField(self, name: str, /) -> bool: ...  # protobuf spells it so


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request cost, in USD at the column's scale: ``total`` is exactly ``input + output``."""

    input: Decimal  # the prompt, its cached tokens at the cached price
    output: Decimal
    total: Decimal


def cost_breakdown(
    prompt_tokens: int,
    completion_tokens: int,
    prompt_per_1k: float,
    completion_per_1k: float,
    *,
    cached_tokens: int = 0,
    cached_prompt_per_1k: float | None = None,
) -> Cost:
    """USD for the tokens at the per-1k prices, each side rounded half-even to the column's scale.

    ``cached_tokens`` are part of ``prompt_tokens`` (as OpenAI counts them); with a cached price they
    are billed at it, without one at the prompt price.

    Computed in integers (units of the column's last place, from each price's exact fraction), since
    every request is priced by the worker, the gateway and accounting; the result is the decimal
    arithmetic's to the digit (``tests/unit/test_accounting_pricing.py`` checks it against that).
    """
    cached = min(cached_tokens, prompt_tokens) if cached_prompt_per_1k is not None else 0
    if cached:
        n1, d1 = _price_ratio(prompt_per_1k)
        n2, d2 = _price_ratio(cached_prompt_per_1k or 0.0)
        input_units = _rounded(((prompt_tokens - cached) * n1 * d2 + cached * n2 * d1) * _SCALE, d1 * d2 * 1000)
    else:
        input_units = _units(prompt_tokens, prompt_per_1k)
    output_units = _units(completion_tokens, completion_per_1k)
    return Cost(_usd(input_units), _usd(output_units), _usd(input_units + output_units))


def _usd(units: int) -> Decimal:
    """``units`` of 1e-12 USD as the Decimal the column stores (exponent -12)."""
    return Decimal(units).scaleb(-COST_SCALE, _CONTEXT)


def request_cost(prompt_tokens: int, completion_tokens: int, cached_tokens: int, price: PriceLike) -> Cost | None:
    """What a request cost at its deployment's ``price``; None when that price is unknown.

    The one figure of a request's cost: the worker writes it into the answer, accounting stores it
    and the gateway settles budgets with it, so all three agree to the last digit.
    """
    if price.unknown:
        return None
    cached_price = price.cached_prompt_per_1k if price.HasField("cached_prompt_per_1k") else None
    return cost_breakdown(
        prompt_tokens,
        completion_tokens,
        price.prompt_per_1k,
        price.completion_per_1k,
        cached_tokens=cached_tokens,
        cached_prompt_per_1k=cached_price,
    )


def billed_cost(prompt_tokens: int, completion_tokens: int, cached_tokens: int, price: PriceLike) -> Cost | None:
    """``request_cost``, and None too for a price accounting refuses (negative, not finite): accounting
    stores no cost for such a row, so the answer, the headers and the budgets show none either."""
    try:
        return request_cost(prompt_tokens, completion_tokens, cached_tokens, price)
    except InvalidPriceError:
        return None


def cost_usd(prompt_tokens: int, completion_tokens: int, prompt_per_1k: float, completion_per_1k: float) -> Decimal:
    """USD for the tokens at the per-1k prices (``cost_breakdown``'s total, no cached price)."""
    return cost_breakdown(prompt_tokens, completion_tokens, prompt_per_1k, completion_per_1k).total


def usd_json(usd: Decimal) -> str:
    """``usd`` as JSON number text, exactly (no binary float in between): ``0.00000225``, ``0``."""
    return format(usd.normalize(_CONTEXT), "f")


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
    units = _units(prompt_tokens, prompt_per_1k) + _units(completion_tokens, completion_per_1k)
    return -(-units // _UNITS_PER_NANO)  # rounded up to nano-USD, as to_nano_usd


def _units(tokens: int, usd_per_1k: float) -> int:
    """One side of ``cost_breakdown`` in units of 1e-12 USD (its scale), rounded half-even."""
    numerator, denominator = _price_ratio(usd_per_1k)
    return _rounded(tokens * numerator * _SCALE, denominator * 1000)


def _rounded(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-even to an integer."""
    units, rest = divmod(numerator, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and units % 2):
        units += 1
    return units


_SCALE = 10**COST_SCALE
_UNITS_PER_NANO = _SCALE // NANO_USD_PER_USD


@functools.lru_cache(maxsize=4096)
def _price_ratio(usd_per_1k: float) -> tuple[int, int]:
    """A price as the exact fraction ``price_to_decimal`` reads it (a deployment has few prices)."""
    return price_to_decimal(usd_per_1k).as_integer_ratio()
