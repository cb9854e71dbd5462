"""Numbers a request body can carry that the workers cannot hold.

pydantic-core, which parses a body at the gateway, reads numbers the workers' orjson does not:

- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON; orjson refuses them);
- numbers beyond a 64-bit float, such as ``1e400`` (read as infinity; orjson refuses them);
- integers beyond 64 bits (orjson reads them as floats, silently changing them; where the gateway
  re-encodes a body, as on ``/v1/messages``, orjson cannot write them at all).

Let through, such a body is routed and fails at a worker, as a deployment's error. It is refused
here instead, with a 400 naming the field by its JSON path (``messages.0.content.1.n``).

What it costs: a normal body is scanned once at C speed for the only shapes these numbers can
take (a run of five or more digit or exponent characters, ``NaN``, ``Infinity``); only a body that
has one, or a large one, has its parsed values walked for the exact field. The body is never
parsed a second time.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

# What orjson holds as an integer: int64 and uint64.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

# Each of the numbers above has a run of five of these characters once digits, exponent marks and
# '+' are folded together: an integer beyond 64 bits has 19 digits or more; a float beyond 1.8e308
# has an exponent of three digits after a digit and an 'e' (or, with a smaller exponent, an integer
# part of 210 digits). Text rarely has such runs; a body that does is merely walked. The first
# letters of NaN and Infinity fold together too, so that one look says whether either may be there.
_FOLD = bytes.maketrans(b"123456789eE+I", b"0" * 12 + b"N")
_RUN = b"00000"
_N = ord("N")
# Scanning costs per byte, walking per value: past this size (an image, a long history) a body's
# parsed values are walked without scanning it first.
SCAN_AT_MOST = 16 * 1024


@dataclass(frozen=True, slots=True)
class UnholdableNumber:
    param: str  # the field's JSON path, e.g. "messages.0.content"
    reason: str  # what is wrong, without the field's name


def unholdable_number(parsed: BaseModel, body: bytes) -> UnholdableNumber | None:
    """The first number in ``parsed`` (validated from ``body``) that a worker could not hold."""
    if len(body) <= SCAN_AT_MOST and not _may_hold_one(body):
        return None
    if _all_holdable(parsed):  # most bodies the scan lets through hold none: walk them fast, then
        return None
    found = _first(parsed, ())  # walk again, noting the path this time
    if found is None:
        return None
    path, value = found
    return UnholdableNumber(".".join(str(p) for p in path), _reason(value))


def _may_hold_one(body: bytes) -> bool:
    folded = body.translate(_FOLD)
    # An int's ``in`` is a bare memchr, several times cheaper than a one-byte bytes' ``in``.
    return _RUN in folded or (_N in folded and (b"NaN" in body or b"Infinity" in body))


def _all_holdable(parsed: BaseModel) -> bool:
    stack: list[Any] = [parsed]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        value = pop()
        kind = type(value)  # not isinstance: bool is an int, and needs no check
        if kind is str or value is None or kind is bool:
            continue
        if kind is int:
            if value < INT_MIN or value > INT_MAX:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is list:
            extend(value)
        elif kind is dict:
            extend(value.values())
        else:  # a model: its fields worth walking are looked up once per class
            names = _fields_cache.get(kind)
            if names is None:
                if not isinstance(value, BaseModel):
                    continue
                names = _fields_that_may_hold_numbers(kind)
            for name in names:
                push(getattr(value, name))
            if value.__pydantic_extra__:
                extend(value.__pydantic_extra__.values())
    return True


def _first(value: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], int | float] | None:
    kind = type(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else (path, value)
    if kind is float:
        return None if math.isfinite(value) else (path, value)
    items: typing.Iterable[tuple[str | int, Any]]
    if kind is dict:
        items = value.items()
    elif kind is list:
        items = enumerate(value)
    elif isinstance(value, BaseModel):
        items = _items_of(value)
    else:
        return None
    for key, item in items:
        if (found := _first(item, (*path, key))) is not None:
            return found
    return None


def _items_of(model: BaseModel) -> typing.Iterator[tuple[str, Any]]:
    for name in _fields_that_may_hold_numbers(type(model)):
        yield name, getattr(model, name)
    if model.__pydantic_extra__:
        yield from model.__pydantic_extra__.items()


_NUMBERLESS = (str, bool, type(None))
_fields_cache: dict[type[BaseModel], tuple[str, ...]] = {}


def _fields_that_may_hold_numbers(cls: type[BaseModel]) -> tuple[str, ...]:
    """A model's fields, less those whose type admits no number at all (strings, booleans,
    literals) and the numbers validation has bounded already (NaN and infinities fail any bound)."""
    names = _fields_cache.get(cls)
    if names is None:
        names = _fields_cache[cls] = tuple(
            name
            for name, field in cls.model_fields.items()
            if not _numberless(field.annotation) and not _bounded(field)
        )
    return names


def _bounded(field: FieldInfo) -> bool:
    if not _made_of(field.annotation, (int, float, type(None))):
        return False
    low = [m.ge for m in field.metadata if isinstance(m, annotated_types.Ge) and isinstance(m.ge, int | float)]
    high = [m.le for m in field.metadata if isinstance(m, annotated_types.Le) and isinstance(m.le, int | float)]
    return bool(low and high) and all(INT_MIN <= bound <= INT_MAX for bound in (*low, *high))


def _numberless(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Literal:
        return all(not isinstance(v, int | float) or isinstance(v, bool) for v in typing.get_args(annotation))
    return _made_of(annotation, _NUMBERLESS) or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and all(_numberless(arg) for arg in typing.get_args(annotation))
    )


def _made_of(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether ``annotation`` is one of ``kinds``, or a union of them."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(arg in kinds for arg in typing.get_args(annotation))
    return annotation in kinds


def _reason(value: float) -> str:
    if isinstance(value, int):
        return f"integers must be between {INT_MIN} and {INT_MAX}"
    if math.isnan(value):
        return "NaN is not a JSON number"
    return "the number is beyond a 64-bit float's range (as is Infinity, which is not a JSON number either)"
