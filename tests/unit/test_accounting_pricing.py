from __future__ import annotations

import random
from decimal import ROUND_HALF_EVEN, Context, Decimal

import pytest

from common.pricing import (
    COST_SCALE,
    InvalidPriceError,
    billed_cost,
    cost_breakdown,
    cost_usd,
    max_cost_nano_usd,
    price_to_decimal,
    request_cost,
    to_nano_usd,
    usd_json,
)
from modelrouter.router.v1 import router_pb2


def test_cost_is_exact_decimal_of_both_sides() -> None:
    # 1200 * 0.0015 / 1000 + 345 * 0.002 / 1000 = 0.0018 + 0.00069
    assert cost_usd(1200, 345, 0.0015, 0.002) == Decimal("0.00249")


def test_price_is_read_as_the_decimal_that_was_configured_not_the_binary_double() -> None:
    # As binary doubles 3 * 0.1 / 1000 is 0.00030000000000000003; the configured price was 0.1.
    assert price_to_decimal(0.1) == Decimal("0.1")
    assert cost_usd(3, 0, 0.1, 0.0) == Decimal("0.0003")
    assert cost_usd(1, 1, 0.00015, 0.0006) == Decimal("0.00000075")


def test_zero_prices_and_zero_tokens_cost_nothing() -> None:
    assert cost_usd(1000, 1000, 0.0, 0.0) == Decimal(0)
    assert cost_usd(0, 0, 0.03, 0.06) == Decimal(0)
    assert cost_usd(0, 10, 0.03, 0.0) == Decimal(0)


def test_cost_has_the_column_scale_and_rounds_half_even() -> None:
    cost = cost_usd(1, 0, 0.0015, 0.0)
    assert cost == Decimal("0.0000015")
    assert cost.as_tuple().exponent == -COST_SCALE
    # 5 * 1e-10 / 1000 = 5e-13: half of the last place rounds to even (0), 1.5e-12 rounds up to 2e-12.
    assert cost_usd(5, 0, 1e-10, 0.0) == Decimal(0)
    assert cost_usd(15, 0, 1e-10, 0.0) == Decimal("0.000000000002")


def test_largest_token_counts_stay_exact() -> None:
    most = 2**32 - 1
    assert cost_usd(most, most, 0.01, 0.03) == Decimal(most) * Decimal("0.04") / 1000


@pytest.mark.parametrize("bad", [-0.001, float("nan"), float("inf"), float("-inf")])
def test_invalid_prices_are_refused(bad: float) -> None:
    with pytest.raises(InvalidPriceError):
        cost_usd(1, 1, bad, 0.0)
    with pytest.raises(InvalidPriceError):
        cost_usd(1, 1, 0.0, bad)


def test_the_reservation_cost_in_integers_equals_the_decimal_bill() -> None:
    """max_cost_nano_usd (integers, on every budgeted admission) and to_nano_usd(cost_usd(...)) (what
    the settlement and the ledger bill) must never disagree, whatever the rounding."""
    rng = random.Random(7)
    prices = [0.0, 0.0015, 0.1 + 0.2, 1e-7, 3.333, 0.00025, 15.0, 1 / 3, 2.5e-9, 123.456789]
    prices += [rng.uniform(0, 0.1) for _ in range(30)] + [round(rng.uniform(0, 0.1), 7) for _ in range(30)]
    tokens = [0, 1, 2, 7, 999, 1000, 4096, 128_000, 2**32 - 1] + [rng.randrange(0, 200_000) for _ in range(20)]
    for _ in range(20_000):
        p, c = rng.choice(prices), rng.choice(prices)
        pt, ct = rng.choice(tokens), rng.choice(tokens)
        assert max_cost_nano_usd(pt, ct, p, c) == to_nano_usd(cost_usd(pt, ct, p, c)), (pt, ct, p, c)


@pytest.mark.parametrize("bad", [-0.001, float("nan"), float("inf")])
def test_the_reservation_cost_refuses_a_broken_price(bad: float) -> None:
    with pytest.raises(InvalidPriceError):
        max_cost_nano_usd(10, 10, bad, 0.001)


def test_the_two_sides_are_rounded_each_and_the_total_is_their_exact_sum() -> None:
    # 3 * 1.5e-9 / 1000 = 4.5e-12 -> 4e-12 and 7 * 2.5e-9 / 1000 = 17.5e-12 -> 18e-12 (half-even).
    cost = cost_breakdown(3, 7, 1.5e-9, 2.5e-9)
    assert (cost.input, cost.output) == (Decimal("0.000000000004"), Decimal("0.000000000018"))
    assert cost.total == cost.input + cost.output == cost_usd(3, 7, 1.5e-9, 2.5e-9)


def test_cached_tokens_are_part_of_the_prompt_and_billed_at_the_cached_price() -> None:
    cost = cost_breakdown(1000, 10, 2.5, 10.0, cached_tokens=400, cached_prompt_per_1k=1.25)
    assert cost.input == Decimal("2.0")  # 600 * 2.5 / 1000 + 400 * 1.25 / 1000 = 1.5 + 0.5
    assert cost.output == Decimal("0.1")
    # Without a cached price they are prompt tokens like the rest; never more cached than prompt.
    assert cost_breakdown(1000, 0, 2.5, 10.0, cached_tokens=400).input == Decimal("2.5")
    assert cost_breakdown(10, 0, 2.5, 10.0, cached_tokens=50, cached_prompt_per_1k=0.0).input == Decimal(0)


def test_request_cost_reads_the_price_message_and_knows_an_unknown_price() -> None:
    price = router_pb2.Price(prompt_per_1k=2.5, completion_per_1k=10.0, cached_prompt_per_1k=1.25)
    assert request_cost(1000, 10, 400, price) == cost_breakdown(
        1000, 10, 2.5, 10.0, cached_tokens=400, cached_prompt_per_1k=1.25
    )
    # A cached price of 0 is a price (free cache hits), not "no cached price".
    free_cache = router_pb2.Price(prompt_per_1k=2.5, cached_prompt_per_1k=0.0)
    assert request_cost(1000, 0, 1000, free_cache).total == Decimal(0)  # type: ignore[union-attr]
    assert request_cost(1000, 10, 0, router_pb2.Price(unknown=True)) is None


def test_usd_json_is_the_exact_decimal_as_json_number_text() -> None:
    assert usd_json(Decimal("0.000002250000")) == "0.00000225"
    assert usd_json(Decimal("0E-12")) == "0"
    assert usd_json(Decimal("12.500000000000")) == "12.5"


def _decimal_breakdown(
    prompt: int, completion: int, p: float, c: float, cached: int, cached_price: float | None
) -> tuple[Decimal, Decimal]:
    """The bill as decimal arithmetic states it: each side's exact product, rounded half-even once."""
    ctx = Context(prec=80)
    quantum = Decimal(1).scaleb(-COST_SCALE)

    def exact(tokens: int, price: float) -> Decimal:
        return ctx.multiply(Decimal(tokens), Decimal(repr(price)))

    cached = min(cached, prompt) if cached_price is not None else 0
    side = exact(prompt - cached, p)
    if cached:
        side = ctx.add(side, exact(cached, cached_price or 0.0))
    return tuple(  # type: ignore[return-value]
        ctx.divide(x, Decimal(1000)).quantize(quantum, rounding=ROUND_HALF_EVEN, context=ctx)
        for x in (side, exact(completion, c))
    )


def test_the_integer_breakdown_is_the_decimal_arithmetics_to_the_digit() -> None:
    """cost_breakdown computes in integers (it runs for every request in three services); it must be
    the decimal arithmetic's figure, its exponent (the column's scale) included, cached tokens too."""
    rng = random.Random(11)
    prices = [0.0, 0.0015, 0.1 + 0.2, 1e-7, 3.333, 0.00025, 15.0, 1 / 3, 2.5e-9, 1.5e-10, 123.456789]
    prices += [rng.uniform(0, 0.1) for _ in range(30)] + [round(rng.uniform(0, 0.1), 7) for _ in range(30)]
    tokens = [0, 1, 3, 5, 7, 15, 999, 1000, 4096, 128_000, 2**32 - 1] + [rng.randrange(0, 200_000) for _ in range(20)]
    for _ in range(20_000):
        p, c = rng.choice(prices), rng.choice(prices)
        pt, ct = rng.choice(tokens), rng.choice(tokens)
        cached_price = rng.choice([None, rng.choice(prices)])
        cached = rng.choice([0, rng.choice(tokens)])
        cost = cost_breakdown(pt, ct, p, c, cached_tokens=cached, cached_prompt_per_1k=cached_price)
        want_in, want_out = _decimal_breakdown(pt, ct, p, c, cached, cached_price)
        case = (pt, ct, p, c, cached, cached_price)
        assert (cost.input, cost.output, cost.total) == (want_in, want_out, want_in + want_out), case
        assert {x.as_tuple().exponent for x in (cost.input, cost.output, cost.total)} == {-COST_SCALE}, case
        assert usd_json(cost.total) == usd_json(want_in + want_out), case


def test_billed_cost_is_request_cost_and_none_for_a_price_accounting_refuses() -> None:
    price = router_pb2.Price(prompt_per_1k=2.5, completion_per_1k=10.0)
    assert billed_cost(1000, 10, 0, price) == request_cost(1000, 10, 0, price)
    assert billed_cost(1000, 10, 0, router_pb2.Price(unknown=True)) is None
    assert billed_cost(1000, 10, 0, router_pb2.Price(prompt_per_1k=-1.0)) is None
