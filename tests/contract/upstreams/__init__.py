"""Fake upstreams for the contract suite: one module per network provider in ``workers.providers.REGISTRY``,
each defining ``WIRE``, an object that speaks that provider's real wire format (see ``server.Wire``)."""

from __future__ import annotations

import importlib

from tests.contract.server import Wire
from workers.providers import REGISTRY

OFFLINE_PROVIDERS = frozenset({"fake"})  # need no upstream; covered by unit tests
NETWORK_PROVIDERS = sorted(set(REGISTRY) - OFFLINE_PROVIDERS)


def wire_of(provider: str) -> Wire:
    """``tests/contract/upstreams/<provider>.py``'s ``WIRE`` (an ImportError names the missing module)."""
    wire: Wire = importlib.import_module(f"tests.contract.upstreams.{provider}").WIRE
    return wire
