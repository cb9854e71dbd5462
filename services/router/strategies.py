"""How a public model's deployments share its traffic: the config's ``strategy`` per model.

``priority`` and ``cost`` are orders, fixed when the routing table is built: the pick takes the first
usable candidate, exactly as before strategies existed (nothing more per request). ``weighted``,
``least-busy`` and ``latency`` choose inside the pick's Lua script (``lua/deployments.lua``) from state
in Redis, so every replica balances on the same picture; the script learns which by the arguments
``lua_args`` appends after the candidates' limits. ``least-busy`` and ``latency`` need every attempt's
outcome (to end its in-flight count, to feed the EWMAs): their targets carry ``report_outcome``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

PRIORITY, WEIGHTED, LEAST_BUSY, LATENCY, COST = "priority", "weighted", "least-busy", "latency", "cost"
# The strategy's code in the pick script; absent for the pure orders.
_LUA_CODE = {WEIGHTED: "w", LEAST_BUSY: "b", LATENCY: "l"}
_NEEDS_OUTCOMES = frozenset({LEAST_BUSY, LATENCY})

REASONS = {
    PRIORITY: "the highest-priority deployment that is healthy and under its limits",
    WEIGHTED: "a weighted share of the model's traffic among its usable deployments",
    LEAST_BUSY: "the usable deployment with the fewest requests in flight",
    LATENCY: "the usable deployment with the lowest recent latency",
    COST: "the cheapest deployment that is healthy and under its limits",
}


class Weighted(Protocol):
    @property
    def weight(self) -> float: ...


class Ranked(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def blended_price(self) -> float: ...


def needs_outcomes(strategy: str) -> bool:
    return strategy in _NEEDS_OUTCOMES


def lua_args(strategy: str, candidates: Sequence[Weighted]) -> list[str | float]:
    """What the pick script needs after the candidates' limits (nothing for the pure orders)."""
    code = _LUA_CODE.get(strategy)
    if code is None:
        return []
    if strategy == WEIGHTED:
        return [code, *(c.weight for c in candidates)]
    return [code]


_R = TypeVar("_R", bound=Ranked)


def order(strategy: str, candidates: Sequence[_R]) -> list[_R]:
    """Candidates in the order the pick walks them: cost puts the cheapest first (ties by priority,
    then config order); every other strategy keeps priority order, which breaks its ties."""
    if strategy == COST:
        return sorted(candidates, key=lambda c: (c.blended_price, c.priority))
    return sorted(candidates, key=lambda c: c.priority)
