from __future__ import annotations

import random
from decimal import Decimal

import pytest

from common.pricing import COST_SCALE, InvalidPriceError, cost_usd, max_cost_nano_usd, price_to_decimal, to_nano_usd


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
